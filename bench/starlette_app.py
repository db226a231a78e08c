"""P1's baseline: a bare Starlette app under uvicorn with the same server settings as
ingest, whose endpoints parse the JSON body and answer, doing nothing else.

    python -m bench.starlette_app PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def single(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"message_id": body.get("device_id"), "status": "accepted"})


async def batch(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"results": [{"status": "accepted"} for _ in body["messages"]]})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/ingest", single, methods=["POST"]),
        Route("/ingest/batch", batch, methods=["POST"]),
        Route("/health", health),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
