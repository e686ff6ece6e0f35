"""GBNF grammars for constrained sampling: building blocks and JSON Schema conversion."""
