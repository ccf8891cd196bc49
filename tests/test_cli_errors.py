"""The command line with a database it cannot use: one line saying so and what to check, exit 1,
no traceback and no password; database URLs are printed with their passwords masked."""
from click.testing import CliRunner

from engine.cli import main as cli
from engine.db import shown_url
from tests.conftest import ROOT

UNREACHABLE = "postgresql+psycopg://gridflow:secret-pw@127.0.0.1:1/nowhere"   # nothing listens on port 1


def test_a_database_that_cannot_be_reached_is_one_clear_error():
    for args in (["init-db"], ["deploy", str(ROOT / "processes")]):
        out = CliRunner().invoke(cli, args, env={"DATABASE_URL": UNREACHABLE})
        assert out.exit_code == 1, (args, out.output)
        assert "error: the database at postgresql+psycopg://gridflow:***@127.0.0.1:1/nowhere could not be used" \
            in out.output, out.output
        assert "Connection refused" in out.output or "connection failed" in out.output
        assert "check DATABASE_URL" in out.output
        assert "secret-pw" not in out.output and "Traceback" not in out.output


def test_database_urls_are_shown_with_the_password_masked(tmp_path):
    assert shown_url("postgresql+psycopg://u:secret@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert shown_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
    assert "secret" not in shown_url("not a url secret")
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    out = CliRunner().invoke(cli, ["init-db"], env={"DATABASE_URL": url})
    assert out.exit_code == 0 and f"schema up to date: {url}" in out.output, out.output


def test_numbers_out_of_range_are_refused_before_anything_runs():
    from click.testing import CliRunner
    from engine.cli import main as cli
    for args, option in ((["demo", "--cases", "1", "--months", "0"], "--months"), (["demo", "--cases", "-5"], "--cases"),
                         (["login-log", "--limit", "-3"], "--limit"), (["worker", "--once", "--interval", "0"], "--interval"),
                         (["worker", "--once", "--batch", "0"], "--batch")):
        out = CliRunner().invoke(cli, args, env={"DATABASE_URL": "sqlite:////nonexistent/never.sqlite"})
        assert out.exit_code == 2 and f"Invalid value for '{option}'" in out.output, (args, out.output)
