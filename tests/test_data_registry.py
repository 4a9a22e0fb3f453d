"""Registry, cache and downloads: against the shared copies and a loopback HTTP server."""

import hashlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pooch
import pytest
from typer.testing import CliRunner

from rnnlab.cli.data import data_app
from rnnlab.data import registry
from rnnlab.errors import RnnlabError


def one_line_error(excinfo: pytest.ExceptionInfo, name: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert name in message
    return message


class Server:
    """Serves ``files`` (URL path -> bytes); ``truncate`` paths announce the full length, send half."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.truncate else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    s = Server()
    monkeypatch.setenv("RNNLAB_DATA_URL", s.url)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point downloads at a loopback port nobody listens on: any download attempt fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RNNLAB_DATA_URL", f"http://127.0.0.1:{port}")


def test_data_dir_prefers_argument_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "env"))
    assert registry.data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert registry.data_dir() == tmp_path / "env"
    monkeypatch.delenv("RNNLAB_DATA")
    assert registry.data_dir().name == "rnnlab"


def test_registry_pins_the_shared_digests(shared_data):
    if not (shared_data / "SHA256SUMS").is_file():
        pytest.skip("no shared copies with a SHA256SUMS here: the download verified each digest")
    pinned = {}
    for ds in registry.DATASETS.values():
        for f in ds.files:
            pinned[f.name] = f.sha256
            pinned.update(f.alternatives)
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert pinned[name] == digest, name


def test_present_files_are_verified_and_never_downloaded(shared_data, offline):
    for name in ("london-aq", "airlines", "poetry1", "poetry2"):
        paths = registry.fetch(name, shared_data)
        assert all(p.parent == shared_data for p in paths.values())
    train, test = registry.fetch("electric-devices", shared_data)
    assert {(train, test)} <= {
        ("ElectricDevices_TRAIN.tsv", "ElectricDevices_TEST.tsv"),
        ("ElectricDevices_TRAIN.csv", "ElectricDevices_TEST.csv"),
    }


def test_unknown_dataset_suggests_the_closest_name():
    with pytest.raises(RnnlabError) as e:
        registry.fetch("poetry")
    assert "did you mean 'poetry1'" in one_line_error(e, "'poetry'")


def test_missing_file_without_network_is_one_line_error(tmp_path, offline):
    with pytest.raises(RnnlabError) as e:
        registry.fetch("london-aq", tmp_path)
    message = one_line_error(e, "LondonAQ.npz")
    assert "cannot connect" in message and "--data-dir or RNNLAB_DATA" in message
    assert list(tmp_path.iterdir()) == []


def test_present_file_with_wrong_digest_is_reported_not_used(tmp_path, offline):
    (tmp_path / "poetry1.txt.gz").write_bytes(b"not the poetry")
    with pytest.raises(RnnlabError) as e:
        registry.fetch("poetry1", tmp_path)
    assert "sha256" in one_line_error(e, "poetry1.txt.gz")


def test_download_lands_verified_and_is_reused(shared_data, tmp_path, server):
    body = (shared_data / "poetry1.txt.gz").read_bytes()
    server.files["/TextGeneration/poetry1.txt.gz"] = body
    path = registry.fetch("poetry1", tmp_path)["poetry1.txt.gz"]
    assert path.read_bytes() == body
    assert registry.fetch("poetry1", tmp_path)["poetry1.txt.gz"] == path
    assert server.requests == ["/TextGeneration/poetry1.txt.gz"]  # once: the second fetch reused it
    assert [p.name for p in tmp_path.iterdir()] == ["poetry1.txt.gz"]


def test_a_file_kept_elsewhere_comes_from_its_own_url_or_through_the_mirror(
    tmp_path, server, monkeypatch
):
    body = b"[PAD]\n[UNK]\nthe\n"
    file = registry.DataFile(
        "vocab.txt",
        "https://models.example/m/resolve/main/vocab.txt",
        hashlib.sha256(body).hexdigest(),
    )
    assert registry.file_url(file) == f"{server.url}/m/resolve/main/vocab.txt"
    server.files["/m/resolve/main/vocab.txt"] = body[:-1]  # another version: refused
    with pytest.raises(RnnlabError) as e:
        registry.fetch_file(file, tmp_path)
    assert "sha256" in one_line_error(e, "vocab.txt") and list(tmp_path.iterdir()) == []
    server.files["/m/resolve/main/vocab.txt"] = body
    assert registry.fetch_file(file, tmp_path).read_bytes() == body
    monkeypatch.delenv("RNNLAB_DATA_URL")
    assert registry.file_url(file) == file.url  # no mirror: upstream itself
    minilm = registry.dataset("minilm").files
    assert [f.url.split("/")[2] for f in minilm] == ["huggingface.co"] * 2


@pytest.mark.parametrize("failure", ["wrong digest", "404", "truncated"])
def test_failed_download_is_one_line_error_and_leaves_no_file(
    shared_data, tmp_path, server, failure
):
    body = (shared_data / "poetry1.txt.gz").read_bytes()
    url = "/TextGeneration/poetry1.txt.gz"
    if failure == "wrong digest":
        server.files[url] = body[:-1] + b"x"
    elif failure == "truncated":
        server.files[url] = body
        server.truncate.add(url)
    with pytest.raises(RnnlabError) as e:
        registry.fetch("poetry1", tmp_path)
    message = one_line_error(e, "poetry1.txt.gz")
    expected = {"wrong digest": "sha256", "404": "HTTP 404", "truncated": "closed before the whole"}
    assert expected[failure] in message
    assert list(tmp_path.iterdir()) == []


def test_unpinned_download_is_checked_by_structure_and_removed_if_wrong(tmp_path, server):
    # the lab's ElectricDevices .csv has no pinned digest: a file with the wrong row count is refused
    server.files["/Electric/ElectricDevices_TRAIN.csv"] = b"1,0.5,0.25\n2,0.5,0.75\n"
    with pytest.raises(RnnlabError) as e:
        registry.fetch("electric-devices", tmp_path)
    assert "expected 8926 rows of 97 columns" in one_line_error(e, "ElectricDevices_TRAIN.csv")
    assert list(tmp_path.iterdir()) == []


def test_accepted_alternative_with_wrong_digest_is_reported(tmp_path, offline):
    (tmp_path / "ElectricDevices_TRAIN.tsv").write_text("1\t0.5\t0.25\n2\t0.5\t0.75\n")
    with pytest.raises(RnnlabError) as e:
        registry.fetch("electric-devices", tmp_path)
    one_line_error(e, "ElectricDevices_TRAIN.tsv")


def test_cli_list_shows_every_dataset_and_presence(shared_data):
    result = CliRunner().invoke(
        data_app, ["list", "--data-dir", str(shared_data)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert set(registry.DATASETS) <= set(rows)
    assert "yes" in rows["london-aq"] and "no" in rows["poetry3"]


def test_cli_fetch_and_path(shared_data, offline):
    runner = CliRunner()
    result = runner.invoke(data_app, ["fetch", "poetry2", "--data-dir", str(shared_data)])
    assert result.exit_code == 0 and str(shared_data / "poetry2.txt.gz") in result.output
    result = runner.invoke(data_app, ["path", "--data-dir", str(shared_data)])
    assert result.output.strip() == str(shared_data)


def test_cli_error_is_one_line_on_stderr_with_status_2(tmp_path, offline, monkeypatch, capsys):
    from rnnlab.cli import main

    monkeypatch.setattr("sys.argv", ["rnnlab", "data", "fetch", "all", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines)
    assert len(lines) == len(registry.DATASETS) + 1  # one per dataset, then the summary


@pytest.mark.parametrize("quiet", [True, False])
def test_a_quiet_run_downloads_without_a_word(shared_data, tmp_path, server, quiet):
    """`rnnlab run --quiet` fetching its data for the first time prints nothing about it."""
    from rnnlab.runs.pipeline import run
    from rnnlab.tasks import Sentiment

    server.files["/Sentiment/Airlines.csv"] = (shared_data / "Airlines.csv").read_bytes()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = pooch.get_logger()
    logger.addHandler(handler)
    try:
        cfg = Sentiment.config(None, ["train.epochs=1", "model.hidden=4", "data.num_words=50"])
        run(Sentiment, cfg, tmp_path / "run", "cpu", quiet=quiet, data_dir=tmp_path / "data")
    finally:
        logger.removeHandler(handler)
    assert (tmp_path / "data" / "Airlines.csv").is_file()
    assert any("Downloading" in r.getMessage() for r in records) != quiet


def test_a_download_on_a_terminal_shows_its_progress(
    shared_data, tmp_path, server, capsys, monkeypatch
):
    """A bar with the file's name and its bytes (rich, through pooch's progress-bar calls);
    `quiet_downloads` draws none, and neither does output that is not a terminal."""
    server.files["/TextGeneration/poetry1.txt.gz"] = (shared_data / "poetry1.txt.gz").read_bytes()
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: draw as on a terminal
    with registry.quiet_downloads():
        registry.fetch("poetry1", tmp_path / "quiet")
    assert capsys.readouterr().err == ""
    registry.fetch("poetry1", tmp_path / "shown")
    shown = capsys.readouterr().err
    assert "poetry1.txt.gz" in shown and "66.8/66.8 kB" in shown
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    registry.fetch("poetry1", tmp_path / "piped")
    assert capsys.readouterr().err == ""
