"""English for the UI strings of one area per module: `MESSAGES = {"中文": "English"}`.
web/i18n.py merges them all into MESSAGES_EN at import."""
