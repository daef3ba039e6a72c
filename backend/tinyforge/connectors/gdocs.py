"""Google Docs, by document id or by Drive folder, through google-api-python-client.

Credentials: a service-account JSON key, an OAuth "authorized user" JSON (with a refresh
token), or a bare OAuth access token. The API descriptions come from the discovery documents
the client ships (static discovery), so nothing is fetched but the documents themselves.
`api_root` points the client somewhere other than Google (a private endpoint or a proxy).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinyforge.connectors.records import Block, SourceError

SCOPES = ["https://www.googleapis.com/auth/documents.readonly",
          "https://www.googleapis.com/auth/drive.readonly"]
# The roots Google serves these APIs from (the client's defaults when no api_root is given).
GOOGLE_ENDPOINTS = ("https://www.googleapis.com", "https://docs.googleapis.com")
# Google's OAuth token endpoints (the `token_uri` of the key files it issues, current and older).
GOOGLE_TOKEN_URIS = ("https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token")
_FOLDER_MIME = "application/vnd.google-apps.folder"
_DOC_MIME = "application/vnd.google-apps.document"


@dataclass
class GoogleDocsSource:
    """Headings, paragraphs and tables of Google Docs: listed ids and/or every Doc in a folder."""

    document_ids: list[str] = field(default_factory=list)
    folder_id: str | None = None
    credentials_file: str | None = None  # service-account key or authorized-user JSON
    access_token: str | None = None  # instead of a file: an OAuth access token
    api_root: str | None = None  # default: Google's endpoints
    kind: str = "document"

    def __post_init__(self) -> None:
        if not self.document_ids and not self.folder_id:
            raise SourceError("Google Docs", "give document ids or a Drive folder id")
        if bool(self.credentials_file) == bool(self.access_token):
            raise SourceError("Google Docs", "give either a credentials JSON file or an access token")
        what = ", ".join(self.document_ids) + (f" folder {self.folder_id}" if self.folder_id else "")
        self.name = f"Google Docs ({what.strip(', ')})"
        self._done = 0
        self._total = 0

    def progress(self) -> float | None:
        return self._done / self._total if self._total else None

    def records(self) -> Iterator[Block]:
        credentials, self._account = self._credentials()
        docs = self._service("docs", "v1", "", credentials)
        ids = list(self.document_ids)
        if self.folder_id:
            drive = self._service("drive", "v3", "drive/v3/", credentials)
            ids += [i for i in self._folder_documents(drive) if i not in ids]
        self._total = len(ids)
        for document_id in ids:
            document = self._call(lambda: docs.documents().get(documentId=document_id).execute(),
                                  f"gdoc:{document_id}", "Google Doc")
            yield from document_blocks(document, f"gdoc:{document_id}")
            self._done += 1

    # -- internals ---------------------------------------------------------------------

    def _credentials(self):
        import google.oauth2.credentials
        from google.oauth2 import service_account

        if self.access_token:
            return google.oauth2.credentials.Credentials(token=self.access_token), None
        path = Path(self.credentials_file)
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SourceError(str(path), f"cannot read the credentials JSON: {exc}") from None
        kind = info.get("type") if isinstance(info, dict) else None
        try:
            if kind == "service_account":
                credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
                return credentials, info.get("client_email")
            if kind == "authorized_user":
                return google.oauth2.credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES), None
        except (ValueError, KeyError) as exc:
            raise SourceError(str(path), f"invalid {kind} credentials: {exc}") from None
        raise SourceError(str(path), f"credentials of type {kind!r}: expected a service-account key "
                                     "(\"service_account\") or an OAuth authorized-user file (\"authorized_user\")")

    def _service(self, api: str, version: str, service_path: str, credentials):
        from googleapiclient.discovery import build

        options = {"api_endpoint": self.api_root.rstrip("/") + "/" + service_path} if self.api_root else None
        return build(api, version, credentials=credentials, static_discovery=True, cache_discovery=False,
                     client_options=options)

    def _folder_documents(self, drive) -> list[str]:
        folder = self._call(lambda: drive.files().get(fileId=self.folder_id, fields="id,name,mimeType",
                                                       supportsAllDrives=True).execute(),
                            f"drive folder {self.folder_id}", "Drive folder")
        if folder.get("mimeType") != _FOLDER_MIME:
            raise SourceError(f"drive folder {self.folder_id}", f"{folder.get('name')!r} is not a folder "
                                                               f"({folder.get('mimeType')})")
        ids, token = [], None
        query = f"'{self.folder_id}' in parents and mimeType = '{_DOC_MIME}' and trashed = false"
        while True:
            page = self._call(lambda: drive.files().list(
                q=query, fields="nextPageToken, files(id, name)", pageSize=100, pageToken=token, orderBy="name",
                supportsAllDrives=True, includeItemsFromAllDrives=True).execute(),
                f"drive folder {self.folder_id}", "Drive folder")
            ids += [f["id"] for f in page.get("files", [])]
            token = page.get("nextPageToken")
            if not token:
                return ids

    def _call(self, request, source: str, what: str):
        from google.auth.exceptions import GoogleAuthError
        from googleapiclient.errors import HttpError

        shared_with = f"share it with {self._account}" if self._account else "share it with the signed-in account"
        try:
            return request()
        except HttpError as exc:
            status = exc.resp.status
            if status == 404:
                raise SourceError(source, f"{what} not found: the id is wrong, or it is not shared "
                                          f"({shared_with})") from None
            if status == 403:
                raise SourceError(source, f"{what} not accessible: permission denied ({shared_with})") from None
            if status == 401:
                raise SourceError(source, "the credentials were refused (expired or revoked token)") from None
            raise SourceError(source, f"the Google API answered {status}: {exc.reason}") from None
        except GoogleAuthError as exc:
            if self.access_token:  # a bare token cannot be refreshed: the only fix is a new one
                raise SourceError(source, "the access token was refused (expired or revoked); "
                                          "give a fresh one or a credentials file") from None
            raise SourceError(source, f"could not sign in to Google: {exc}") from None
        except OSError as exc:
            raise SourceError(source, f"could not reach the Google API: {exc}") from None


def _paragraph_text(paragraph: dict) -> str:
    return "".join(e.get("textRun", {}).get("content", "") for e in paragraph.get("elements", [])).strip()


def document_blocks(document: dict, source: str) -> Iterator[Block]:
    """Blocks of a Docs API document resource, in reading order, with heading paths."""
    path: list[tuple[int, str]] = []
    paragraph_number = table_number = 0
    for element in document.get("body", {}).get("content", []):
        headings = tuple(t for _, t in path)
        if "paragraph" in element:
            paragraph_number += 1
            paragraph = element["paragraph"]
            text = _paragraph_text(paragraph)
            if not text:
                continue
            style = paragraph.get("paragraphStyle", {}).get("namedStyleType", "NORMAL_TEXT")
            level = 1 if style == "TITLE" else int(style[8:]) if style.startswith("HEADING_") else 0
            if level:
                while path and path[-1][0] >= level:
                    path.pop()
                yield Block(source, f"paragraph {paragraph_number}", "heading", text, tuple(t for _, t in path), level)
                path.append((level, text))
            else:
                yield Block(source, f"paragraph {paragraph_number}", "paragraph", text, headings)
        elif "table" in element:
            table_number += 1
            rows = []
            for row in element["table"].get("tableRows", []):
                cells = [" ".join(" ".join(_paragraph_text(c["paragraph"]) for c in cell.get("content", [])
                                           if "paragraph" in c).split())
                         for cell in row.get("tableCells", [])]
                if any(cells):
                    rows.append(" | ".join(cells))
            if rows:
                yield Block(source, f"table {table_number}", "table", "\n".join(rows), headings)
