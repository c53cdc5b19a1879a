"""The dashboard page: static HTML, CSS and JavaScript served at ``/``.

The page talks to the same API and channels as every other client; nothing
in this package reaches into the export domain.
"""
