"""MCP servers Hearth runs for its clients: mcp.json, and the manager that keeps them."""
