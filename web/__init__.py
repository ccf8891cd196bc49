"""Flask web app (task inboxes, forms, case pages, JSON API): see issue 4.

Depends on `engine` and `forms`; `engine` never imports this package.
"""
