"""A running Label Studio server, through its REST API (``requests``): create a project
with the round's labelling config, import the tasks, download the JSON export.

The API token comes from the environment (``LABEL_STUDIO_API_KEY``), never from a file in
the run dir. Label Studio 1.23 has two kinds: a legacy token (``Authorization: Token``;
new organisations have it switched off until an admin enables it, or the server starts
with ``--enable-legacy-api-token``) and a personal access token (a JWT refresh token,
exchanged here for an access token at ``/api/token/refresh``).

(The ``label-studio-sdk`` package would pin numpy and OpenCV versions of its own, so alseg
talks to the documented endpoints directly.)
"""

from __future__ import annotations

import os
from typing import Any

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"


class LabelStudioError(RuntimeError):
    pass


class LabelStudio:
    """Args:
    url: the server, e.g. http://localhost:8080.
    token: the API token (default: ``$LABEL_STUDIO_API_KEY``).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import requests

        token = token or os.environ.get(TOKEN_VARIABLE)
        if not token:
            raise LabelStudioError(
                f"no Label Studio API token: set {TOKEN_VARIABLE} (Account & Settings in "
                "Label Studio)"
            )
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = self._authorization(token)

    def _authorization(self, token: str) -> str:
        if token.count(".") == 2:  # a JWT: a personal access token, exchanged for access
            r = self._post("/api/token/refresh", json={"refresh": token}, auth=False)
            return f"Bearer {r['access']}"
        return f"Token {token}"

    def _request(self, method: str, path: str, auth: bool = True, **kw: Any) -> Any:
        import requests

        session = self.session if auth else requests
        try:
            r = session.request(method, self.url + path, timeout=self.timeout, **kw)
        except requests.RequestException as e:
            raise LabelStudioError(f"Label Studio at {self.url} is not reachable ({e})") from e
        if r.status_code >= 400:
            hint = (
                " (a legacy token of an organisation that has them switched off? see "
                "Organization > Settings > Access Token Settings)"
                if r.status_code == 401
                else ""
            )
            raise LabelStudioError(f"{method} {path}: HTTP {r.status_code} {r.text[:300]}{hint}")
        return r.json() if r.content else None

    def _post(self, path: str, auth: bool = True, **kw: Any) -> Any:
        return self._request("POST", path, auth=auth, **kw)

    def create_project(self, title: str, label_config: str) -> int:
        return int(
            self._post("/api/projects", json={"title": title, "label_config": label_config})["id"]
        )

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> int:
        r = self._post(f"/api/projects/{project}/import", json=tasks)
        return int(r.get("task_count", len(tasks))) if isinstance(r, dict) else len(tasks)

    def export(self, project: int) -> Any:
        """The project's tasks with their annotations (Label Studio's JSON export)."""
        return self._request(
            "GET", f"/api/projects/{project}/export", params={"exportType": "JSON"}
        )
