"""Running one process scenario for the designer's page, isolated from real cases.

The scenario runs in a child process on a scratch SQLite database (schema, the demo
organisation the scenarios are written against, the process version's files and
the forms), exactly as `gridflow scenarios` does. Why not a rolled-back transaction
on the real database: the service commits once per step (its own unit of work), and
a scenario moves the clock by days — the engine's clock is process-wide, so moving
it inside the web server would move it for every official's request and for the
timer worker. A child process has its own clock and its own database; real cases,
work items, audit rows and notifications cannot be touched.

The parent sends JSON on stdin and reads JSON from stdout:
    in:  {"files": {name: text}, "scenario": yaml text, "name": str, "forms_dir": str, "org": path,
          "form_revisions": {key@N: yaml text}, "siblings": {name: yaml text of the process's other scenarios}}
    out: {"passed": bool, "step": str|null, "message": str|null, "step_zh": str|null,
          "message_zh": str|null, "log": [...], "business_key": str|null, "steps_done": int}
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 180
SCENARIO_START = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)


@dataclass
class ScenarioOutcome:
    name: str
    passed: bool
    step: str | None = None
    message: str | None = None
    log: list = field(default_factory=list)
    business_key: str | None = None
    steps_done: int = 0
    step_zh: str | None = None
    message_zh: str | None = None

    def text(self, lang: str = "zh") -> tuple[str | None, str | None]:
        """(the step that broke, what was wrong) in `lang`."""
        if lang == "en":
            return self.step, self.message
        return self.step_zh or STEP_ZH.get(self.step, self.step), self.message_zh or self.message


STEP_ZH = {"load": "读取场景", "deploy": "部署", "run": "运行"}


def run_isolated(files: dict[str, str], scenario_text: str, name: str, forms_dir, org_path,
                 form_revisions: dict[str, str] | None = None, siblings: dict[str, str] | None = None
                 ) -> ScenarioOutcome:
    """Run one scenario in a child process; never raises for a failing or broken scenario.
    `form_revisions` are the designer's saved forms ({key@N: YAML}) the version may name;
    `siblings` the other scenarios of the process ({name: YAML}) its `earlier:` may name."""
    payload = json.dumps({"files": files, "scenario": scenario_text, "name": name,
                          "forms_dir": str(forms_dir), "org": str(org_path),
                          "form_revisions": form_revisions or {}, "siblings": siblings or {}})
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # the child never opens the real database
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "engine.scenario_sandbox"], input=payload, text=True,
                              capture_output=True, cwd=str(ROOT), env=env, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return ScenarioOutcome(name, False, "run", f"the scenario did not finish within {TIMEOUT_SECONDS} s",
                               message_zh=f"场景未能在 {TIMEOUT_SECONDS} 秒内运行完毕")
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return ScenarioOutcome(name, False, "run", f"the scenario runner failed: {tail[0][:300]}",
                               message_zh=f"场景运行程序出错：{tail[0][:300]}")
    return ScenarioOutcome(name=name, passed=bool(out.get("passed")), step=out.get("step"),
                           message=out.get("message"), step_zh=out.get("step_zh"), message_zh=out.get("message_zh"),
                           log=list(out.get("log") or []),
                           business_key=out.get("business_key"), steps_done=int(out.get("steps_done") or 0))


def _child(payload: dict) -> dict:
    import yaml

    from . import clock as clock_module, schema
    from .db import Database
    from .deploy import DeployError, deploy_files
    from .errors import EngineError
    from .form_store import VersionedForms, load_revision
    from .org import load_org_file
    from .scenarios import Scenario, ScenarioFailure, run_scenario
    from .service import WorkflowService

    result = {"passed": False, "step": None, "message": None, "log": [], "business_key": None, "steps_done": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for other, text in (payload.get("siblings") or {}).items():
            if other != payload["name"] and "/" not in other and "\\" not in other and not other.startswith("."):
                (Path(tmp) / f"{other}.yaml").write_text(text, encoding="utf-8")
        path = Path(tmp) / f"{payload['name']}.yaml"
        path.write_text(payload["scenario"], encoding="utf-8")
        try:
            scenario = Scenario.load(path)
        except (ValueError, yaml.YAMLError, OSError) as exc:
            result.update(step="load", message=f"the scenario file cannot be read: {exc}",
                          message_zh=f"场景文件无法读取：{getattr(exc, 'zh', None) or exc}")
            return result
        db = Database(f"sqlite:///{tmp}/scenario.sqlite")
        forms = VersionedForms(payload["forms_dir"])
        for key, text in (payload.get("form_revisions") or {}).items():
            forms.add_revision(key, load_revision(text, key))
        try:
            schema.upgrade(db)
            with db.unit_of_work() as session:
                load_org_file(session, payload["org"])
                deploy_files(session, payload["files"], forms.keys(), actor="scenario", forms=forms)
        except DeployError as exc:
            db.dispose()
            result.update(step="deploy", message="; ".join(str(p) for p in exc.problems),
                          message_zh="；".join(_problem_zh(p) for p in exc.problems))
            return result
        frozen = clock_module.FrozenClock(SCENARIO_START)
        clock_module.set_clock(frozen)
        try:
            run = run_scenario(WorkflowService(db, forms=forms, upload_dir=Path(tmp) / "uploads"), frozen, scenario)
            result.update(passed=True, log=run.log, business_key=run.business_key, steps_done=run.steps_done)
        except ScenarioFailure as exc:
            result.update(step=exc.step, message=exc.message, step_zh=exc.step_zh, message_zh=exc.message_zh)
        except EngineError as exc:
            result.update(step="run", message=f"{exc.__class__.__name__}: {exc}", message_zh=exc.zh)
        except (KeyError, TypeError, ValueError) as exc:
            result.update(step="run", message=f"{exc.__class__.__name__}: {exc}",
                          message_zh=f"场景写法有误（{exc.__class__.__name__}）：{exc}")
        finally:
            clock_module.set_clock(clock_module.SystemClock())
            db.dispose()
    return result


def _problem_zh(problem) -> str:
    message, fix = problem.text("zh")
    where = f"{problem.file}：{problem.element}" if problem.element else problem.file
    return f"{where}：{message}" + (f"（{fix}）" if fix else "")


def main() -> None:
    payload = json.loads(sys.stdin.read())
    try:
        result = _child(payload)
    except Exception as exc:  # reported to the designer as the step that broke, never a traceback page
        result = {"passed": False, "step": "run", "message": f"{exc.__class__.__name__}: {exc}", "log": [],
                  "business_key": None, "steps_done": 0}
    sys.stdout.write("\n" + json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
