"""The dashboard page at / and the API docs at /docs, both with assets served by this app only."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
STATIC_URL = "/static"

# The page may load nothing from elsewhere: scripts and styles from this origin (KaTeX sets inline
# styles on the formulas it renders, hence 'unsafe-inline' for styles only), data from the API.
DASHBOARD_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": DASHBOARD_POLICY, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="evonorm-search API",
        swagger_js_url=f"{STATIC_URL}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_URL}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_URL}/vendor/swagger-ui/favicon-32x32.png",
    )
