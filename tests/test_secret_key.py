"""The web's signing key on an install without SECRET_KEY: made once, in instance/, and
the same for every worker, even when gunicorn's workers all start at the same moment."""
from __future__ import annotations

import multiprocessing
import os
import stat


def _key_after(barrier, instance, results, seed):
    import pathlib
    import random
    import time
    from web import _secret_key
    write_text = pathlib.Path.write_text
    delay = random.Random(seed).uniform(0, 0.2)

    def slow_write(self, *args, **kwargs):   # workers reach the write at different moments
        time.sleep(delay)
        return write_text(self, *args, **kwargs)
    pathlib.Path.write_text = slow_write
    barrier.wait()
    results.put(_secret_key(instance))


def test_workers_starting_together_agree_on_one_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    context = multiprocessing.get_context("fork")
    workers = 8
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_key_after, args=(barrier, str(tmp_path), results, n))
                 for n in range(workers)]
    for process in processes:
        process.start()
    keys = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert os.listdir(tmp_path) == ["secret_key"]                      # no draft left behind
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    from web import _secret_key
    assert _secret_key(str(tmp_path)) == keys[0]                        # and kept for the next start


def test_the_environment_wins(tmp_path, monkeypatch):
    from web import _secret_key
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert _secret_key(str(tmp_path)) == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def test_without_hard_links_the_key_is_still_made_once(tmp_path, monkeypatch):
    from web import _secret_key

    def no_links(*_args):
        raise PermissionError("hard links not supported here")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setattr(os, "link", no_links)
    key = _secret_key(str(tmp_path))
    assert len(key) == 64 and _secret_key(str(tmp_path)) == key
    assert os.listdir(tmp_path) == ["secret_key"]
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
