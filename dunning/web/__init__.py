"""The merchant's "Inkasso" area as a web page (issue 17): settings, case board, CSV, actions.

Server-rendered (Starlette, Jinja2, uvicorn), no JavaScript. It reads through the same code
as the CLI: `dunning.models.board` for the board and its CSV, `dunning.tasks.case_ops` for
actions, `dunning.tasks.merchant_settings` for settings.
"""
