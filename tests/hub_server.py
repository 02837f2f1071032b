"""A Hugging Face Hub on 127.0.0.1 for the tests: the endpoints huggingface_hub's client calls to
download a file (HEAD/GET ``/REPO/resolve/REVISION/FILE``) and to upload a folder (create a repo,
a branch, validate a model card, preupload, commit), answering as the Hub does, errors included
(``X-Error-Code`` RepoNotFound / RevisionNotFound / EntryNotFound). Files are kept in memory,
per repo and branch; every request is recorded (method, path, whether it carried a token)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackHTTP


class FakeHub(LoopbackHTTP):
    def __init__(self) -> None:
        #: repo id -> {"private": bool, "branches": {name: {"commit": sha, "files": {path: bytes}}}}
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str, bool]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, doc, headers: dict | None = None):
                self._reply(status, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})})

            def _error(self, status: int, code: str, head: bool = False):
                self._reply(status, json.dumps({"error": code}).encode(),
                            {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}, head)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _record(self):
                hub.requests.append((self.command, self.path, "authorization" in {k.lower() for k in self.headers}))

            def do_HEAD(self):
                self._resolve(head=True)

            def do_GET(self):
                self._resolve(head=False)

            def _resolve(self, head: bool):
                self._record()
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path)
                if not m:
                    return self._error(404, "EntryNotFound" if "/resolve/" in self.path else "RepoNotFound", head)
                repo, rev, path = m.group(1), m.group(2), m.group(3)
                rev = rev.replace("%2F", "/")
                info = hub.repos.get(repo)
                if info is None or (info["private"] and "authorization" not in {k.lower() for k in self.headers}):
                    return self._error(401, "RepoNotFound", head)
                branch = info["branches"].get(rev) or next(
                    (b for b in info["branches"].values() if b["commit"] == rev), None)
                if branch is None:
                    return self._error(404, "RevisionNotFound", head)
                if path not in branch["files"]:
                    return self._error(404, "EntryNotFound", head)
                data = branch["files"][path]
                etag = '"' + hashlib.sha1(data).hexdigest() + '"'
                self._reply(200, data, {"X-Repo-Commit": branch["commit"], "ETag": etag,
                                        "Content-Type": "application/octet-stream"}, head)

            def do_POST(self):
                self._record()
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    doc = json.loads(body)
                    repo = f"{doc.get('organization') or 'user'}/{doc['name']}"
                    if repo in hub.repos:
                        return self._json(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo}"})
                    hub.repos[repo] = {"private": doc.get("visibility") == "private" or bool(doc.get("private")),
                                       "branches": {"main": {"commit": "0" * 40, "files": {}}}}
                    return self._json(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    return self._json(200, {"warnings": []})
                m = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)$", path)
                if not m or m.group(1) not in hub.repos:
                    return self._error(404, "RepoNotFound")
                repo, what, rev = m.group(1), m.group(2), m.group(3).replace("%2F", "/")
                branches = hub.repos[repo]["branches"]
                if what == "branch":
                    if rev in branches:
                        return self._json(409, {"error": "branch exists"})
                    branches[rev] = {"commit": branches["main"]["commit"], "files": dict(branches["main"]["files"])}
                    return self._json(200, {})
                if rev not in branches:
                    return self._error(404, "RevisionNotFound")
                if what == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                files = dict(branches[rev]["files"])
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                sha = hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
                branches[rev] = {"commit": sha, "files": files}
                return self._json(200, {"commitUrl": f"{hub.url}/{repo}/commit/{sha}", "commitOid": sha,
                                        "pullRequestUrl": None})

        self.start(Handler)
        self.closed = False

    def close(self) -> None:
        """Stop serving (again: a no-op), e.g. before an offline check."""
        if not self.closed:
            self.closed = True
            super().close()
