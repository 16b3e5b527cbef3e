"""The FastAPI app: ``POST /v1/recognize``, ``GET /v1/models``, ``GET /healthz``,
``GET /metrics``, ``POST /v1/models/{name}/reload`` (admin), the pages ``/`` (try a model)
and ``/label`` (label captchas, least confident first; the review queue's, with
``--review-dir``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from captchalab import __version__
from captchalab.data.dataset import IMAGE_SUFFIXES
from captchalab.data.preprocess import ImageError, ImageTooLarge, open_image
from captchalab.runtime.constraints import ConstraintError, Constraints, symbol_groups
from captchalab.runtime.recognizer import Recognizer
from captchalab.service.guard import BodyGuard, BodyRefused
from captchalab.service.labelling import LabelQueue
from captchalab.service.limits import Limits
from captchalab.service.metrics import CONTENT_TYPE, ServiceMetrics
from captchalab.service.models import ModelSet, ReloadRefused, ServedModel
from captchalab.service.review import ReviewQueue, Unsure, suffix_of

LOG = logging.getLogger("captchalab.service")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
DEFAULT_REVIEW_BELOW = 0.5  # the unsure share in /metrics, without --review-below

__all__ = ["ServedModel", "create_app"]


class RecognizeJSON(BaseModel):
    """JSON body of ``POST /v1/recognize``: base64 images (plain or data: URLs)."""

    images: list[str] = Field(default_factory=list, description="base64-encoded images")
    image: str | None = Field(None, description="one base64-encoded image")
    model: str | None = Field(None, description="model name (default: the first served)")
    allowed: str | None = Field(None, description="only these symbols may be read")
    length: int | str | list[int] | None = Field(
        None, description="read exactly N characters (4), or between MIN and MAX ([4, 6] or "
        "'4-6')")
    case: str | None = Field(None, description="as-trained, lower or upper: a symbol's two "
                             "cases count as one, shown in that case")


class Reading(BaseModel):
    """One image's result: ``text`` for families that read order, else ``characters``."""

    name: str = Field(description="the upload's file name, or 'image N'")
    confidence: float
    text: str | None = None
    char_confidences: list[float] | None = None
    characters: dict[str, float] | None = Field(
        None, description="families that cannot read order: each symbol's probability")
    order: str | None = None
    answer: int | None = Field(None, description="models of arithmetic captchas: the answer "
                               "of the question read (7+3=? -> 10)")
    answer_error: str | None = Field(None, description="why a reading has no answer")


class RecognizeAnswer(BaseModel):
    model: str
    version: str = Field(description="hash of the model file")
    results: list[Reading]


class ErrorAnswer(BaseModel):
    error: str = Field(description="what was wrong, in one line")


ERRORS = {status: {"model": ErrorAnswer, "description": text} for status, text in {
    400: "bad image or malformed request", 404: "unknown model or file",
    408: "the client sent its request too slowly", 413: "over a size limit",
    415: "unsupported content type", 422: "invalid request fields"}.items()}

RECOGNIZE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "array", "items": {"type": "string",
                                                            "format": "binary"}},
                       "model": {"type": "string"}, "allowed": {"type": "string"},
                       "length": {"type": "string", "description": "4 or 4-6"},
                       "case": {"type": "string",
                                "enum": ["as-trained", "lower", "upper"]}}}},
    "application/json": {"schema": RecognizeJSON.model_json_schema()}}}}


class ReloadBody(BaseModel):
    path: str | None = Field(None, description="the model file to swap in (default: the "
                             "served model's own file, read again)")


class LabelSave(BaseModel):
    file: str = Field(description="name of the unlabelled image")
    label: str = Field(description="the text in the image")


class LabelUndo(BaseModel):
    saved: str = Field(description="name of the labelled file to take back")


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _page(name: str) -> str:
    return resources.files("captchalab.service").joinpath("pages", name).read_text("utf-8")


def decode_image(data: bytes, name: str, limits: Limits) -> Image.Image:
    """Checked, decoded, upright image of one upload; a 4xx ``ClientError`` when it is bad."""
    if len(data) > limits.max_image_bytes:
        raise ClientError(413, f"{name}: {len(data)} bytes, the limit is "
                               f"{limits.max_image_bytes}")
    try:
        return open_image(data, max_pixels=limits.max_pixels)
    except ImageTooLarge as error:
        raise ClientError(413, f"{name}: {error}") from None
    except ImageError as error:
        raise ClientError(400, f"{name}: {error}") from None


def create_app(models: list[ServedModel], limits: Limits | None = None,
               labels: LabelQueue | None = None, review: ReviewQueue | None = None,
               admin_token: str | None = None, watch: bool = False,
               threads: int | None = None) -> FastAPI:
    """The service over ``models`` (the first is the default). ``labels`` enables
    ``/label``; ``review`` keeps the images read below its confidence; ``admin_token``
    opens the admin endpoints to callers off this machine that send it; ``watch`` reloads a
    model when its file changes."""
    limits = limits or Limits()
    served = ModelSet(models, limits, threads)
    metrics = ServiceMetrics(review.below if review else DEFAULT_REVIEW_BELOW)
    for model in served:
        model.batcher.on_batch = metrics.batch.labels(model.name).observe

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for model in served:
            model.batcher.start()
        watcher = asyncio.get_running_loop().create_task(_watch(served, metrics)) if watch \
            else None
        yield
        if watcher is not None:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
        for model in served:
            await model.batcher.stop()
        if review is not None:
            await run_in_threadpool(review.close)

    # the docs pages' scripts and styles come from the package, not a CDN: /docs works offline
    app = FastAPIOffline(title="captchalab", version=__version__, lifespan=lifespan,
                         description="Read text captchas with models trained by captchalab.")
    app.add_middleware(BodyGuard, max_bytes=limits.max_request_bytes,
                       timeout=limits.client_timeout)
    app.state.models, app.state.metrics, app.state.review = served, metrics, review

    @app.exception_handler(ClientError)
    async def client_error(request: Request, error: ClientError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code,
                            headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"invalid request: {where}: {first.get('msg', '')}"},
                            status_code=422)

    def pick(name: str | None) -> ServedModel:
        model = served.get(name)
        if model is None:
            raise ClientError(404, f"unknown model {name!r}; served: "
                                   f"{', '.join(served.order)}")
        return model

    def admin(request: Request) -> None:
        """Admin endpoints answer callers on this machine, or ones that send the token."""
        if request.client is not None and request.client.host in LOOPBACK:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if admin_token and hmac.compare_digest(given.encode(), admin_token.encode()):
            return
        raise ClientError(403, "admin endpoints answer requests from this machine, or with "
                               "the admin token (Authorization: Bearer TOKEN)")

    async def read_request(request: Request) -> tuple[list[tuple[str, bytes]], dict]:
        """The uploads and the options (model, allowed, length, case) of a request: form
        fields or JSON keys, else query parameters."""
        kind = request.headers.get("content-type", "")
        query = request.query_params
        if kind.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=limits.max_batch + 1,
                                          max_fields=limits.max_batch + 8)
            except BodyRefused:
                raise
            except Exception as error:
                raise ClientError(400, f"malformed multipart body ({error})") from None
            uploads = [(getattr(v, "filename", None) or f"file {i + 1}", await v.read())
                       for i, (k, v) in enumerate(form.multi_items())
                       if k in ("file", "files") and hasattr(v, "read")]
            options = {key: form.get(key) or query.get(key) for key in OPTIONS}
            return uploads, {k: v for k, v in options.items() if isinstance(v, str)}
        if kind.startswith("application/json"):
            try:
                body = RecognizeJSON.model_validate_json(await request.body())
            except ValueError as error:
                raise ClientError(422, f"invalid JSON body ({str(error).splitlines()[0]})"
                                  ) from None
            encoded = ([body.image] if body.image else []) + body.images
            uploads = []
            for i, text in enumerate(encoded):
                if text.startswith("data:") and "," in text:
                    text = text.split(",", 1)[1]
                try:
                    uploads.append((f"image {i + 1}", base64.b64decode(text, validate=True)))
                except (binascii.Error, ValueError):
                    raise ClientError(400, f"image {i + 1}: invalid base64") from None
            given = {"model": body.model, "allowed": body.allowed, "length": body.length,
                     "case": body.case}
            return uploads, {key: given[key] if given[key] is not None else query.get(key)
                             for key in OPTIONS}
        raise ClientError(415, "send multipart/form-data with file fields or JSON with "
                               "base64 images")

    @app.post("/v1/recognize", summary="Read captchas", response_model=RecognizeAnswer,
              response_model_exclude_none=True, responses=ERRORS,
              openapi_extra=RECOGNIZE_BODY,
              description="Multipart form with one or more `file` fields, or JSON "
              "`{\"images\": [base64, ...]}`; `model` (form field, JSON key or query) picks "
              "the model. `allowed`, `length` and `case` (the same ways) constrain the "
              "reading inside the decoder; confidences are then renormalised over what was "
              "allowed. Answers one result per image, in order.")
    async def recognize(request: Request) -> dict:
        started, context, status = time.perf_counter(), {"model": "unknown"}, "500"
        try:
            answer = await read(request, context)
            status = "200"
            return answer
        except ClientError as error:
            status = str(error.status)
            raise
        except HTTPException as error:
            status = str(error.status_code)
            raise
        finally:
            metrics.requests.labels(context["model"], status).inc()
            if status == "200":
                metrics.latency.labels(context["model"]).observe(time.perf_counter() - started)

    async def read(request: Request, context: dict) -> dict:
        uploads, options = await read_request(request)
        model = pick(options.get("model"))  # this request reads with it, even if swapped
        context["model"] = model.name
        constraints = _constraints(options, model.recognizer)
        if not uploads:
            raise ClientError(400, "no image in the request (multipart 'file' fields or JSON "
                                   "'images')")
        if len(uploads) > limits.max_batch:
            raise ClientError(413, f"{len(uploads)} images, the limit is {limits.max_batch} "
                                   "per request")
        recognizer = model.recognizer

        def prepare() -> np.ndarray:
            return np.stack([recognizer.prepare(decode_image(data, name, limits))
                             for name, data in uploads])

        with model.batcher.expecting():
            pixels = await run_in_threadpool(prepare)
        try:
            predictions = await model.batcher.predict(pixels, constraints)
        except ConstraintError as error:
            raise ClientError(400, str(error)) from None
        model.recent.append(pixels[0])
        metrics.readings(model.name, [p.confidence for p in predictions])
        if review is not None:
            for (_, data), prediction in zip(uploads, predictions):
                review.offer(Unsure(data, suffix_of(data), prediction.characters,
                                    prediction.confidence, model.name, model.version))
        return {"model": model.name, "version": model.version,
                "results": [{"name": name, **p.to_dict()}
                            for (name, _), p in zip(uploads, predictions)]}

    @app.get("/v1/models", summary="Served models", responses=ERRORS,
             description="Each model's name, version (a hash of its file), family, alphabet "
             "and input, and `drift`: whether its readings have become far less sure than "
             "when it started (a changed captcha scheme); the review queue, if kept.")
    async def list_models() -> dict:
        shown = [m.describe(i == 0) | {"drift": metrics.watch(m.name).drifting}
                 for i, m in enumerate(served)]
        return {"models": shown, "swaps": served.swaps,
                **({"review": await run_in_threadpool(review.stats)} if review else {})}

    @app.post("/v1/models/{name}/reload", summary="Swap a model for a new file (admin)",
              responses={**ERRORS, 403: {"model": ErrorAnswer, "description": "not an admin"},
                         409: {"model": ErrorAnswer, "description": "the file was refused; "
                               "the old model keeps serving"}})
    async def reload(name: str, request: Request, body: ReloadBody | None = None) -> dict:
        admin(request)
        if name not in served.by_name:
            raise ClientError(404, f"unknown model {name!r}; served: {', '.join(served.order)}")
        old = served.by_name[name].version
        try:
            new = await served.reload(name, body.path if body else None)
        except ReloadRefused as error:
            raise ClientError(409, str(error)) from None
        new.batcher.on_batch = metrics.batch.labels(name).observe
        metrics.swapped(name)
        LOG.warning("captchalab: model %s: version %s swapped in for %s", name, new.version, old)
        return {"model": name, "version": new.version, "previous": old}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"description": "the Prometheus text format",
                              "content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/healthz", summary="Liveness", responses=ERRORS)
    async def health() -> dict:
        return {"status": "ok", "models": len(served.order), "version": __version__}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def try_page() -> HTMLResponse:
        return HTMLResponse(_page("index.html"))

    if labels is not None:
        _add_labelling(app, labels)
    return app


OPTIONS = ("model", "allowed", "length", "case")


def _constraints(options: dict, recognizer: Recognizer) -> Constraints:
    """A request's constraints, checked against the model (a 400 when it cannot meet them)."""
    length = options.get("length")
    try:
        if isinstance(length, str):
            low, _, high = length.partition("-")
            length = (int(low), int(high or low))
        constraints = Constraints.make(options.get("allowed"), length, options.get("case"))
        symbol_groups(recognizer.alphabet, constraints)
    except ValueError as error:
        message = str(error) if isinstance(error, ConstraintError) else (
            f"length must be N or MIN-MAX, got {options.get('length')!r}")
        raise ClientError(400, message) from None
    return constraints


async def _watch(served: ModelSet, metrics: ServiceMetrics) -> None:
    """Reload a model when its file changes (written in place or replaced by a rename)."""
    from watchfiles import awatch

    files = {m.path.resolve(): m.name for m in served}
    folders = sorted({str(path.parent) for path in files})
    async for changes in awatch(*folders, debounce=500, step=100):
        for name in dict.fromkeys(files[Path(p).resolve()] for _, p in changes
                                  if Path(p).resolve() in files):
            try:
                await served.reload(name)
                metrics.swapped(name)
                LOG.warning("captchalab: model %s: its file changed, version %s swapped in",
                            name, served.by_name[name].version)
            except ReloadRefused as error:
                LOG.warning("captchalab: model %s: %s", name, error)


def _add_labelling(app: FastAPI, labels: LabelQueue) -> None:
    @app.get("/label", response_class=HTMLResponse, include_in_schema=False)
    async def label_page() -> HTMLResponse:
        return HTMLResponse(_page("label.html"))

    @app.get("/v1/label/queue", summary="Images to label, least confident first",
             responses=ERRORS)
    async def label_queue() -> dict:
        return labels.state()

    @app.get("/v1/label/image/{name}", summary="One image to label", response_class=Response,
             responses={**ERRORS, 200: {"description": "the image file", "content": {
                 labels.media_type(Path(f"image{suffix}")): {} for suffix in IMAGE_SUFFIXES}}})
    async def label_image(name: str) -> Response:
        path = labels.source(name)
        if path is None:
            raise ClientError(404, f"{name}: not an image of the folder being labelled")
        return Response(path.read_bytes(), media_type=labels.media_type(path))

    @app.post("/v1/label", summary="Save a label (never overwrites)", responses=ERRORS)
    async def save_label(body: LabelSave) -> dict:
        try:
            saved = await run_in_threadpool(labels.save, body.file, body.label)
        except LookupError as error:
            raise ClientError(404, str(error)) from None
        except ValueError as error:
            raise ClientError(400, str(error)) from None
        return {"saved": saved.name, **labels.progress()}

    @app.post("/v1/label/undo", summary="Take back a label saved by this server",
              responses=ERRORS)
    async def undo_label(body: LabelUndo) -> dict:
        try:
            source = await run_in_threadpool(labels.undo, body.saved)
        except LookupError as error:
            raise ClientError(404, str(error)) from None
        return {"restored": source, **labels.progress()}
