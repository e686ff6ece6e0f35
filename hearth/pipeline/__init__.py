"""The one conversation pipeline under every API: the internal request, its preparation for
a model (template, tools, grammar, sampling, context check), and the neutral output events."""
