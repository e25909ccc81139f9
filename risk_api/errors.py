"""API errors in the contract's shape: {"detail": {"code", "message" (中文), ...}}."""
from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def unknown_customer() -> ApiError:
    return ApiError(404, "unknown_customer",
                    "抱歉，没有查到您的客户信息，请核对后再试，或转人工客服为您处理。")


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "缺少或错误的访问令牌。")


def verification_required() -> ApiError:
    return ApiError(403, "verification_required", "为了保障您的账户安全，需要先完成身份核验。")


def not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(
        status_code=exc.status,
        content={"detail": {"code": exc.code, "message": exc.message, **exc.extra}},
        headers=headers,
    )
