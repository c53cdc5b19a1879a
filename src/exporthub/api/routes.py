"""User routes: socket tokens, jobs, platforms and downloads."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from exporthub.api.http import HTTPError, JSONResponse, current_user, read_object
from exporthub.exports import jobs
from exporthub.exports.constants import Channel
from exporthub.exports.views import file_name, job_object
from exporthub.realtime import issue_token
from exporthub.sources import platforms

MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}
ZIP_MEDIA_TYPE = "application/zip"
DEFAULT_PER_PAGE = 20
MAX_QUERY_INTEGER = 1_000_000_000
MAX_PER_PAGE = 100
MAX_TOKEN_JOBS = 100
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def socket_token(request: Request) -> Response:
    """A connection token with the user's personal channels, and the
    channels of the jobs listed in an optional ``{"jobs": [...]}``."""
    user = await current_user(request)
    body = await read_object(request, required=False)
    wanted = body.get("jobs", [])
    if not isinstance(wanted, list) or not all(isinstance(g, str) for g in wanted):
        raise HTTPError(400, "invalid_request", "jobs must be a list of job guids")
    if len(wanted) > MAX_TOKEN_JOBS:
        raise HTTPError(400, "invalid_request", f"at most {MAX_TOKEN_JOBS} jobs")
    channels = Channel.personal(user.uuid)
    for guid in dict.fromkeys(wanted):
        job = await jobs.get(request.app.state.db, guid) if _GUID.match(guid) else None
        if job is None:
            raise HTTPError(404, "not_found", f"no job {guid}")
        if job.user_id != user.id:
            raise HTTPError(403, "forbidden", f"job {guid} belongs to another user")
        channels.append(Channel.job(guid))
    settings = request.app.state.settings
    token = issue_token(
        settings.ensure_token_secret(),
        user.uuid,
        ttl=settings.token_ttl,
        channels=channels,
    )
    return JSONResponse({"token": token})


async def create_job(request: Request) -> Response:
    user = await current_user(request)
    body = await read_object(request)
    job = await request.app.state.service.create(
        user, body.get("url"), body.get("options")
    )
    return JSONResponse(_view(request, job), status_code=201)


async def get_job(request: Request) -> Response:
    user = await current_user(request)
    job = await request.app.state.service.get(user, _guid(request))
    return JSONResponse(_view(request, job))


async def list_jobs(request: Request) -> Response:
    user = await current_user(request)
    page = _positive(request, "page", 1, None)
    per_page = _positive(request, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    found, total = await request.app.state.service.page(user, page, per_page)
    return JSONResponse(
        {
            "data": [_view(request, job) for job in found],
            "meta": {
                "page": page,
                "per_page": per_page,
                "total": total,
                "pages": (total + per_page - 1) // per_page,
            },
        }
    )


async def retry_job(request: Request) -> Response:
    user = await current_user(request)
    job = await request.app.state.service.retry(user, _guid(request))
    return JSONResponse(_view(request, job))


async def stop_job(request: Request) -> Response:
    user = await current_user(request)
    job = await request.app.state.service.stop(user, _guid(request))
    return JSONResponse(_view(request, job))


async def convert_job(request: Request) -> Response:
    """Convert a finished export to another format, in the background;
    ``job.convert.done`` or ``job.convert.failed`` tells the result."""
    user = await current_user(request)
    body = await read_object(request)
    job = await request.app.state.service.get(user, _guid(request))
    started = await request.app.state.downloads.convert(user, job, body.get("format"))
    return JSONResponse(started, status_code=202)


async def bulk_download(request: Request) -> Response:
    """Assemble one ZIP of finished exports; ``bulk_download.ready`` carries
    its link, ``bulk_download.failed`` the reason it could not be made."""
    user = await current_user(request)
    body = await read_object(request)
    started = await request.app.state.downloads.bulk(
        user, body.get("guids"), body.get("format")
    )
    return JSONResponse(started, status_code=202)


async def list_platforms(request: Request) -> Response:
    return JSONResponse({"platforms": platforms()})


async def download(request: Request) -> Response:
    """Serve a finished job's file. The token in the path is the only key:
    it is random and long, and only finished jobs have one."""
    token = request.path_params["token"]
    name = request.path_params["name"]
    downloads = request.app.state.downloads
    job = await jobs.get_by_files_token(request.app.state.db, token)
    if job is not None:
        for fmt, media_type in MEDIA_TYPES.items():
            if name == file_name(job, fmt):
                path = downloads.job_file(job, fmt)
                if path.is_file():
                    return FileResponse(path, media_type=media_type, filename=name)
    else:
        path = await downloads.bulk_file(token, name)
        if path is not None:
            return FileResponse(path, media_type=ZIP_MEDIA_TYPE, filename=name)
    raise HTTPError(404, "not_found", "no such file")


def _view(request: Request, job: jobs.Job) -> dict[str, object]:
    return job_object(job, request.app.state.settings.public_url)


def _guid(request: Request) -> str:
    guid = request.path_params["guid"]
    if not _GUID.match(guid):
        raise HTTPError(404, "not_found", f"no job {guid}")
    return guid


def _positive(request: Request, name: str, default: int, maximum: int | None) -> int:
    """A positive integer query parameter; ``maximum`` caps it (a page size),
    and any value is refused beyond what a database integer holds."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_QUERY_INTEGER:
        raise HTTPError(
            400,
            "invalid_request",
            f"{name} must be an integer from 1 to {MAX_QUERY_INTEGER}",
        )
    value = int(raw)
    return min(value, maximum) if maximum else value


def path_id(request: Request, name: str = "id") -> int:
    """An integer id from the path; one no database could hold is not found."""
    value = int(request.path_params[name])
    if value > MAX_QUERY_INTEGER:
        raise HTTPError(404, "not_found", f"no such {name}")
    return value


routes = [
    Route("/api/public/auth/socket", socket_token, methods=["POST"]),
    Route("/api/v3/job", create_job, methods=["POST"]),
    Route("/api/v3/jobs", list_jobs, methods=["GET"]),
    Route("/api/v3/job/{guid}", get_job, methods=["GET"]),
    Route("/api/v3/job/{guid}/retry", retry_job, methods=["PATCH"]),
    Route("/api/v3/job/{guid}/stop", stop_job, methods=["PATCH"]),
    Route("/api/v3/job/{guid}/convert", convert_job, methods=["POST"]),
    Route("/api/v3/bulk-download", bulk_download, methods=["POST"]),
    Route("/api/v3/platforms", list_platforms, methods=["GET"]),
    Route("/download/{token}/{name}", download, methods=["GET"]),
]
