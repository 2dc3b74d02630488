"""The web console: server-rendered pages over the same services, roles and audit as the API.

``app.install_console`` mounts it under ``/console``; each page is one module in ``pages/`` (listed in
``pages.PAGES``) with its templates in ``templates/``.
"""
