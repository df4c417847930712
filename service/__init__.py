"""The FastAPI service and dashboard of evonorm-search: `create_app(settings=None)` builds the app."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
