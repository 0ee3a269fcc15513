"""The LLM matcher through the real ``openai`` client against a local OpenAI-compatible server.

The server (``http.server`` on 127.0.0.1, a free port) plays a script of replies, one per request,
and records every request. Each case checks what ends up in the database.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.cli import format_summary
from kmidi_ingest.db import make_engine
from kmidi_ingest.match import (
    AnswerRejected,
    LlmMatcher,
    MatchRequest,
    MemoryAnswerCache,
    cache_key,
    parse_answer,
)
from kmidi_ingest.options import LlmConfig

SR = 16000
MODEL = "test-model"

GOOD = {
    "pairs": [
        {"track_id": 0, "stem": "Strings", "category": "Strings", "confidence": 0.95},
        {"track_id": 1, "stem": "Brass", "category": "Brass", "confidence": 0.875},
    ],
    "stems": [{"stem": "Brass", "category": "Brass"}, {"stem": "Strings", "category": "Strings"}],
}
BAD_STEM = {
    "pairs": [
        {"track_id": 0, "stem": "Celli", "category": "Strings", "confidence": 0.9},
        {"track_id": 1, "stem": "Brass", "category": "Brass", "confidence": 0.9},
    ],
    "stems": [],
}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = None  # the assistant message (status 200)
    delay_s: float = 0.0


def answer(data: dict[str, Any]) -> Reply:
    return Reply(content=json.dumps(data))


@dataclass
class Server:
    url: str
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "body": body})
            reply = state.script.pop(0) if state.script else Reply(status=503)
            time.sleep(reply.delay_s)
            if reply.status == 200:
                payload = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.content},
                            "finish_reason": "stop",
                        }
                    ],
                }
            else:
                payload = {"error": {"message": f"scripted {reply.status}", "type": "test"}}
            data = json.dumps(payload).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def llm_config(server: Server) -> LlmConfig:
    return LlmConfig(api_key="test", base_url=server.url, model=MODEL, timeout_s=0.5)


def run(make_cue, tmp_path, server: Server, url: str, **kwargs: Any):
    cues = tmp_path / "cues"
    if not cues.exists():
        make_cue("1M01 Opening")
    return ingest(cues, SR, database_url=url, matcher="llm", llm=llm_config(server), **kwargs)


def rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as conn:
        result = [tuple(r) for r in conn.execute(text(sql)).all()]
    engine.dispose()
    return result


MATCHES = (
    "SELECT t.name, a.name, m.method, m.score, m.fallback_reason, t.category, t.category_source "
    "FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id "
    "LEFT JOIN audio_files a ON a.id = m.audio_file_id ORDER BY t.track_index"
)
STEMS = "SELECT name, category, category_source FROM audio_files ORDER BY name"
WARNINGS = "SELECT stage, severity, error_type, message FROM ingest_errors ORDER BY id"


def fuzzy_fallback(reason: str) -> list[tuple]:
    return [
        ("Strings Hi", "Strings", "fuzzy_fallback", 91.3, reason, "Strings", "keyword"),
        ("Brass Ens", "Brass", "fuzzy_fallback", 100.0, reason, "Brass", "keyword"),
    ]


def test_good_answer_is_stored_and_a_second_run_hits_the_cache(make_cue, tmp_path, server, db_url):
    server.script = [answer(GOOD)]
    summary = run(make_cue, tmp_path, server, db_url)
    assert summary.ok, summary.problems
    assert (summary.matcher, summary.llm_requests, summary.llm_cache_hits) == ("llm", 1, 0)
    assert summary.match_fallbacks == 0
    assert rows(db_url, MATCHES) == [
        ("Strings Hi", "Strings", "llm", 95.0, None, "Strings", "llm"),
        ("Brass Ens", "Brass", "llm", 87.5, None, "Brass", "llm"),
    ]
    assert rows(db_url, STEMS) == [("Brass", "Brass", "llm"), ("Strings", "Strings", "llm")]
    assert rows(db_url, "SELECT model, response_json FROM llm_cache") == [(MODEL, json.dumps(GOOD))]
    # the request: one chat completion carrying every name, with a strict json_schema
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == MODEL
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    user = json.loads(body["messages"][-1]["content"])
    assert [t["name"] for t in user["tracks"]] == ["Strings Hi", "Brass Ens"]
    assert user["stems"] == ["Brass", "Strings"]

    again = run(make_cue, tmp_path, server, db_url, force=True)
    assert again.ok and again.cues_ingested == 1
    assert (again.llm_requests, again.llm_cache_hits) == (0, 1)
    assert len(server.requests) == 1  # no new request
    assert "2 tracks matched to stems (llm matcher: 0 requests, 1 cached answers)" in (
        format_summary(again)
    )
    assert rows(db_url, MATCHES)[0][:3] == ("Strings Hi", "Strings", "llm")
    assert rows(db_url, "SELECT COUNT(*) FROM llm_cache") == [(1,)]


@pytest.mark.parametrize(
    ("script", "requests", "reason"),
    [
        ([answer(BAD_STEM)], 1, "LLM answer rejected: unknown stem 'Celli'"),
        ([Reply(content="{\"pairs\": [")], 1, "LLM answer rejected: not valid JSON"),
        ([Reply(status=500)] * 3, 3, "LLM unreachable after 3 attempt(s): HTTP 500"),
        ([Reply(content="{}", delay_s=2.0)] * 3, 3,
         "LLM unreachable after 3 attempt(s): timeout after 0.5 s"),
        ([Reply(status=401)], 1, "LLM unreachable after 1 attempt(s): HTTP 401"),
    ],
    ids=["unknown-stem", "malformed-json", "http-500", "timeout", "http-401"],
)  # fmt: skip
def test_bad_answers_fall_back_to_fuzzy(make_cue, tmp_path, server, script, requests, reason):
    url = f"sqlite:///{tmp_path / 'llm.sqlite'}"
    server.script = list(script)
    summary = run(make_cue, tmp_path, server, url)
    assert len(server.requests) == requests
    assert (summary.llm_requests, summary.match_fallbacks, summary.cues_ingested) == (
        requests,
        1,
        1,
    )
    assert summary.ok  # a fallback is a warning, not a failure
    assert ", 1 cues fell back to fuzzy)" in format_summary(summary)
    assert rows(url, MATCHES) == fuzzy_fallback(reason)
    assert rows(url, STEMS) == [("Brass", "Brass", "keyword"), ("Strings", "Strings", "keyword")]
    assert rows(url, WARNINGS) == [
        ("match", "warning", "LlmFallback", f"matched by fuzzy names instead: {reason}")
    ]
    assert [w.message for w in summary.warnings] == [f"matched by fuzzy names instead: {reason}"]
    assert rows(url, "SELECT COUNT(*) FROM llm_cache") == [(0,)]  # garbage is not cached


def test_rate_limit_is_retried_then_the_answer_is_used(make_cue, tmp_path, server):
    url = f"sqlite:///{tmp_path / 'llm.sqlite'}"
    server.script = [Reply(status=429), answer(GOOD)]
    summary = run(make_cue, tmp_path, server, url)
    assert len(server.requests) == 2
    assert (summary.llm_requests, summary.match_fallbacks) == (2, 0)
    assert rows(url, MATCHES)[0] == ("Strings Hi", "Strings", "llm", 95.0, None, "Strings", "llm")
    assert rows(url, WARNINGS) == []
    assert rows(url, "SELECT COUNT(*) FROM llm_cache") == [(1,)]


def test_retries_back_off_exponentially(server):
    server.script = [Reply(status=503)] * 3
    waits: list[float] = []
    matcher = LlmMatcher(
        model=MODEL,
        api_key="test",
        base_url=server.url,
        cache=MemoryAnswerCache(),
        timeout_s=1.0,
        max_attempts=3,
        backoff_s=0.25,
        sleep=waits.append,
    )
    request = MatchRequest(track_names=("Vln 1",), stem_names=("1M01 VLN1",))
    got = matcher.match(request)
    assert waits == [0.25, 0.5]
    assert got.requests == 3 and got.results[0].method == "fuzzy_fallback"
    assert got.results[0].stem_index == 0
    assert got.fallback_reason == "LLM unreachable after 3 attempt(s): HTTP 503"


REQUEST = MatchRequest(track_names=("Vln 1", "Click"), stem_names=("VLN1 spic", "PNO"))


def reply(pairs: list[dict[str, Any]], stems: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"pairs": pairs, "stems": stems or []})


def pair(track: Any, stem: Any, category: Any = "Strings", confidence: Any = 0.9) -> dict:
    return {"track_id": track, "stem": stem, "category": category, "confidence": confidence}


@pytest.mark.parametrize(
    ("text_", "why"),
    [
        ("", "empty answer"),
        ("[1, 2]", "no 'pairs' list"),
        (reply([pair(0, "VLN1 spic")]), "track id 1 missing"),
        (reply([pair(0, "VLN1 spic"), pair(0, None)]), "track id 0 paired twice"),
        (reply([pair(0, "VLN1 spic"), pair(5, None)]), "unknown track id 5"),
        (reply([pair(0, "VLN1 spic"), pair(1, None, "Cowbell")]), "unknown category 'Cowbell'"),
        (reply([pair(0, "VLN1 spic", confidence=1.5), pair(1, None)]),
         "confidence 1.5 is not in 0..1"),
        (reply([pair(0, "VLN1 spic"), pair(1, None)], [{"stem": "Harp", "category": "Harp"}]),
         "unknown stem 'Harp'"),
    ],
)  # fmt: skip
def test_parse_answer_rejects_answers_that_do_not_fit(text_, why):
    with pytest.raises(AnswerRejected) as info:
        parse_answer(text_, REQUEST)
    assert str(info.value) == why


def test_parse_answer_accepts_names_ignoring_case():
    got = parse_answer(
        reply(
            [pair(0, "vln1 SPIC"), pair(1, None, "Ticker", 1)],
            [{"stem": "PNO", "category": "Piano"}],
        ),
        REQUEST,
    )
    assert [(r.stem_index, r.score, r.method) for r in got.results] == [
        (0, 90.0, "llm"),
        (None, 100.0, "llm"),
    ]
    assert got.track_categories == ("Strings", "Ticker")
    assert got.stem_categories == (None, "Piano")


def test_auto_without_key_uses_fuzzy_and_llm_without_key_is_a_config_error(make_cue, tmp_path):
    from kmidi_ingest.errors import ConfigError

    make_cue("1M01 Opening")
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    summary = ingest(tmp_path / "cues", SR, database_url=url, matcher="auto")
    assert summary.matcher == "fuzzy" and summary.llm_requests == 0
    assert {r[2] for r in rows(url, MATCHES)} == {"fuzzy"}
    with pytest.raises(ConfigError) as raised:
        ingest(tmp_path / "cues", SR, database_url=url, matcher="llm")
    assert str(raised.value) == (
        'matcher="llm" needs llm=LlmConfig(api_key=...) (or use matcher="fuzzy" or "auto")'
    )


def test_cache_key_depends_on_model_and_every_name():
    base = cache_key(MODEL, REQUEST)
    assert base == cache_key(
        MODEL, MatchRequest(track_names=REQUEST.track_names, stem_names=REQUEST.stem_names)
    )
    assert base != cache_key("other-model", REQUEST)
    assert base != cache_key(
        MODEL, MatchRequest(track_names=("Vln 1", "Click"), stem_names=("VLN1 spic",))
    )
    assert base != cache_key(
        MODEL,
        MatchRequest(
            track_names=REQUEST.track_names, stem_names=REQUEST.stem_names, track_files=(0, 1)
        ),
    )


def test_a_cue_without_stems_costs_no_request(server):
    matcher = LlmMatcher(
        model=MODEL, api_key="test", base_url=server.url, cache=MemoryAnswerCache()
    )
    got = matcher.match(MatchRequest(track_names=("Vln 1",), stem_names=()))
    assert server.requests == [] and got.requests == 0
    assert [(r.stem_index, r.method) for r in got.results] == [(None, "fuzzy")]


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hang_up() -> Iterator[tuple[str, list[int]]]:
    """A server that accepts each connection and closes it at once; counts the connections."""
    accepted: list[int] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", accepted
    finally:
        done.set()
        thread.join(5)
        listener.close()


DOWN = "LLM unreachable: connection error at an earlier cue of this run, not asked again"


def three_cues(make_cue) -> None:
    for name in ("1M01 Opening", "1M02 Tension", "2M03 Chase"):
        make_cue(name)


def test_a_closed_port_is_tried_by_the_first_cue_only(make_cue, tmp_path):
    three_cues(make_cue)
    url = f"sqlite:///{tmp_path / 'llm.sqlite'}"
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    llm = LlmConfig(api_key="t", base_url=base_url, model=MODEL, timeout_s=2)
    summary = ingest(tmp_path / "cues", SR, database_url=url, matcher="llm", llm=llm, workers=1)
    assert summary.ok and summary.cues_ingested == 3
    assert (summary.llm_requests, summary.match_fallbacks) == (3, 3)  # all from the first cue
    first = "LLM unreachable after 3 attempt(s): connection error"
    reasons = rows(
        url,
        "SELECT c.name, m.fallback_reason FROM track_matches m "
        "JOIN midi_tracks t ON t.id = m.track_id JOIN midi_files f ON f.id = t.midi_file_id "
        "JOIN cues c ON c.id = f.cue_id ORDER BY c.id, t.track_index",
    )
    by_cue = {name: {r for n, r in reasons if n == name} for name, _ in reasons}
    assert sorted(by_cue.values(), key=lambda r: r != {first}) == [{first}, {DOWN}, {DOWN}]
    assert [m for (m,) in rows(url, "SELECT message FROM ingest_errors ORDER BY id")] == [
        f"matched by fuzzy names instead: {first}"
    ] + [f"matched by fuzzy names instead: {DOWN}"] * 2
    assert rows(url, "SELECT COUNT(*) FROM llm_cache") == [(0,)]


def test_a_server_that_hangs_up_gets_one_cue_of_attempts(hang_up):
    base_url, accepted = hang_up
    matcher = LlmMatcher(
        model=MODEL, api_key="t", base_url=base_url, cache=MemoryAnswerCache(), sleep=lambda s: None
    )
    requests = [
        MatchRequest(track_names=(f"Vln {i}",), stem_names=(f"VLN{i}",)) for i in range(1, 6)
    ]
    got = [matcher.match(r) for r in requests]
    assert len(accepted) == 3  # the first cue's three attempts, then nothing
    assert [g.requests for g in got] == [3, 0, 0, 0, 0]
    assert [g.fallback_reason for g in got] == [
        "LLM unreachable after 3 attempt(s): connection error"
    ] + [DOWN] * 4
    assert all(
        g.results[0].method == "fuzzy_fallback" and g.results[0].stem_index == 0 for g in got
    )


def test_a_server_error_does_not_stop_later_cues(server):
    # HTTP 5xx is an answering server: the next cue asks again.
    server.script = [Reply(status=500)] * 3 + [Reply(content=json.dumps({"pairs": [
        {"track_id": 0, "stem": "VLN1", "category": "Strings", "confidence": 0.9}
    ], "stems": []}))]  # fmt: skip
    matcher = LlmMatcher(
        model=MODEL,
        api_key="t",
        base_url=server.url,
        cache=MemoryAnswerCache(),
        sleep=lambda s: None,
    )
    first = matcher.match(MatchRequest(track_names=("Vln 1",), stem_names=("VLN1",)))
    second = matcher.match(MatchRequest(track_names=("Violin",), stem_names=("VLN1",)))
    assert first.fallback_reason == "LLM unreachable after 3 attempt(s): HTTP 500"
    assert second.fallback_reason is None and second.requests == 1
    assert len(server.requests) == 4
