"""
chatd's front doors: one module per wire format, each adapting to the core.
"""
