"""A stand-in for LiveKit's server API at its network boundary: a loopback HTTP server speaking
RoomService's Twirp protocol as livekit-api's client sends it (``POST /twirp/livekit.RoomService/<Method>``,
binary protobuf bodies, ``Authorization: Bearer <JWT>`` signed with the API secret; errors as Twirp
JSON). It keeps a dict of open rooms and records each call."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from livekit.api import TokenVerifier
from livekit.protocol import room as room_pb
from livekit.protocol.models import ParticipantInfo, Room

PREFIX = "/twirp/livekit.RoomService/"


class FakeLiveKit:
    def __init__(self, api_key: str, api_secret: str):
        self.verifier = TokenVerifier(api_key, api_secret)
        self.rooms: dict[str, tuple[Room, list[ParticipantInfo]]] = {}
        self.calls: list[tuple[str, Any]] = []  # (method, request message)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, ctype = fake.handle(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLiveKit:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def open_room(self, name: str, participants: list[tuple[str, str]], created: int = 1_765_000_000) -> None:
        people = [
            ParticipantInfo(identity=i, name=n, state=ParticipantInfo.State.ACTIVE, joined_at=created + 5)
            for i, n in participants
        ]
        self.rooms[name] = (Room(name=name, num_participants=len(people), creation_time=created), people)

    @staticmethod
    def _error(status: int, code: str, msg: str) -> tuple[int, bytes, str]:
        import json

        return status, json.dumps({"code": code, "msg": msg}).encode(), "application/json"

    def handle(self, path: str, headers, body: bytes) -> tuple[int, bytes, str]:
        if not path.startswith(PREFIX) or headers.get("Content-Type") != "application/protobuf":
            return self._error(404, "bad_route", f"no handler for {path}")
        auth = headers.get("Authorization", "")
        try:
            claims = self.verifier.verify(auth.removeprefix("Bearer "))
        except Exception:
            return self._error(401, "unauthenticated", "invalid token")
        method = path[len(PREFIX) :]
        grants = claims.video
        if method in ("ListRooms",) and not grants.room_list:
            return self._error(403, "permission_denied", "needs roomList")
        if method in ("ListParticipants", "DeleteRoom") and not (grants.room_admin or grants.room_create):
            return self._error(403, "permission_denied", "needs roomAdmin")
        if method == "ListRooms":
            req = room_pb.ListRoomsRequest.FromString(body)
            self.calls.append((method, req))
            rooms = [r for name, (r, _) in self.rooms.items() if not req.names or name in req.names]
            return 200, room_pb.ListRoomsResponse(rooms=rooms).SerializeToString(), "application/protobuf"
        if method == "ListParticipants":
            req = room_pb.ListParticipantsRequest.FromString(body)
            self.calls.append((method, req))
            if req.room not in self.rooms:
                return self._error(404, "not_found", "room not found")
            people = self.rooms[req.room][1]
            return (
                200,
                room_pb.ListParticipantsResponse(participants=people).SerializeToString(),
                "application/protobuf",
            )
        if method == "DeleteRoom":
            req = room_pb.DeleteRoomRequest.FromString(body)
            self.calls.append((method, req))
            if self.rooms.pop(req.room, None) is None:
                return self._error(404, "not_found", "room not found")
            return 200, room_pb.DeleteRoomResponse().SerializeToString(), "application/protobuf"
        return self._error(404, "bad_route", f"no method {method}")
