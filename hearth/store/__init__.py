"""State that outlives the process: one SQLite database (responses, conversations, items)."""

from hearth.store.store import Conversation, Item, Page, Store, StoredResponse

__all__ = ["Conversation", "Item", "Page", "Store", "StoredResponse"]
