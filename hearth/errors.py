"""One error hierarchy. Each class carries its HTTP status and OpenAI error fields; the API
renders them in one place (hearth.api.errors) and the CLI turns them into messages."""

from __future__ import annotations

from typing import Any


class HearthError(Exception):
    """Base of every error Hearth raises on purpose."""

    status_code = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross the engine child's pipe; rebuild them without calling __init__ (some
        # subclasses take other arguments).
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[HearthError], state: dict[str, Any]) -> HearthError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class ConfigError(HearthError):
    """Settings or config file that cannot be used."""

    code = "invalid_config"


class InvalidRequestError(HearthError):
    """The request is malformed or asks for something impossible."""

    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequestError):
    """Prompt plus requested output do not fit in a sequence's context."""

    code = "context_length_exceeded"


class RequestTooLarge(InvalidRequestError):
    """The request body is over the size limit."""

    status_code = 413
    code = "request_too_large"


class AuthenticationError(HearthError):
    """Missing or wrong API key."""

    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(HearthError):
    """A request this server refuses to serve at all (a Host it does not answer to)."""

    status_code = 403
    type = "permission_error"
    code = "forbidden"


class RateLimited(HearthError):
    """Over --rate-limit: retry after `retry_after` seconds."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(HearthError):
    """A route or resource that does not exist."""

    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFoundError):
    """No model with that id (never a silent fallback to another one)."""

    code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(f"The model '{model}' does not exist", param="model")
        self.model = model


class InvalidModelFile(HearthError):
    """A model file that fails validation or cannot be loaded."""

    status_code = 422
    type = "invalid_request_error"
    code = "invalid_model_file"


class ServiceUnavailable(HearthError):
    """The server cannot take the request right now (shutting down, overloaded)."""

    status_code = 503
    type = "server_error"
    code = "service_unavailable"
    retry_after = 5  # seconds, sent as Retry-After

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message, param=param, code=code)
        if retry_after is not None:
            self.retry_after = retry_after


class EngineError(HearthError):
    """llama.cpp failed while serving a request."""

    code = "engine_error"


class EngineCrashed(EngineError):
    """A model's engine process died (abort, segfault, killed); its requests fail with this."""

    code = "engine_crashed"


class InsufficientMemory(ServiceUnavailable):
    """llama.cpp could not allocate a model's context (its KV cache, its buffers): a problem of
    memory, not of the file; fewer loaded models or a smaller context would fit."""

    code = "insufficient_memory"


class RequestTimeout(HearthError):
    """The request ran past --request-timeout."""

    status_code = 504
    type = "timeout_error"
    code = "request_timeout"


class UpstreamError(HearthError):
    """The upstream server of a `backend = "openai"` model refused or failed a request: its
    own 4xx status comes back as it was (with the upstream's message and code); a 5xx, a
    broken stream or an answer that is not the API's is a 502."""

    status_code = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
    ):
        super().__init__(message, param=param, code=code)
        self.status_code = status if 400 <= status < 500 else 502
        if self.status_code < 500:
            self.type = kind or "invalid_request_error"


class UpstreamUnreachable(UpstreamError):
    """No base URL of the upstream model accepted a connection."""

    code = "upstream_unreachable"


class UpstreamTimeout(RequestTimeout):
    """The upstream sent nothing for the model's `timeout_s`."""

    code = "upstream_timeout"


class ModelUnloaded(ServiceUnavailable):
    """The model was unloaded (forced, or the server stopped) while the request ran."""

    code = "model_unloaded"


class ModelFailed(ServiceUnavailable):
    """A model whose engine crashed again and again is refused until loaded explicitly."""

    code = "model_failed"


class RequestCancelled(HearthError):
    """The request was cancelled before it finished (client gone, or shutdown)."""

    status_code = 499
    type = "cancelled"
    code = "cancelled"


class MethodNotAllowed(HearthError):
    """The route exists but not for this HTTP method."""

    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UnsafePath(InvalidRequestError):
    """A name that would reach outside the models directory, or write through a symlink."""

    code = "unsafe_path"


class Conflict(HearthError):
    """The request clashes with the current state (a busy model, a file already there)."""

    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class ModelBusy(Conflict):
    """The model is serving requests; the operation needs `force`."""

    code = "model_busy"


class AlreadyExists(Conflict):
    """A model file of that name is already in the models directory."""

    code = "already_exists"


class NoCapacity(ServiceUnavailable):
    """Every loaded model is busy and there is no room to load another one in time."""

    code = "model_capacity_exceeded"

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(message, param="model", retry_after=retry_after)


class DownloadError(HearthError):
    """A download failed: the remote end, the network, or the file it sent."""

    status_code = 502
    type = "server_error"
    code = "download_failed"


class RemoteNotFound(NotFoundError):
    """The repository, file or quantization asked for does not exist remotely."""

    code = "remote_not_found"


class InsufficientStorage(HearthError):
    """Not enough free disk space for a download or an import."""

    status_code = 507
    type = "server_error"
    code = "insufficient_storage"
