"""One exception family. Each error carries its HTTP status and a stable code."""


class BanditrecError(Exception):
    """Base of every error the service raises on purpose."""

    status = 500
    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class ConfigError(BanditrecError, ValueError):
    """A config value is missing, of the wrong type or out of bounds."""

    code = "invalid_config"


class InvalidRequest(BanditrecError):
    status = 400
    code = "invalid_request"


class Unauthorized(BanditrecError):
    """A guarded route called without a configured key; `basic`: a browser should ask for it."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, basic: bool = False):
        super().__init__(message)
        self.basic = basic


class NotFound(BanditrecError):
    status = 404
    code = "not_found"


class Conflict(BanditrecError):
    status = 409
    code = "conflict"


class Gone(BanditrecError):
    status = 410
    code = "expired"


class Unavailable(BanditrecError):
    """A dependency (Redis) could not durably record what was asked; retry later."""

    status = 503
    code = "unavailable"


class DataError(BanditrecError, ValueError):
    """Input files for `banditrec build` are malformed."""

    code = "invalid_data"
