"""Which store changes wake which controller (``controllers/manager.py``): an owner that looks
only at its children's phases is not reconciled for every other status write of a child."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumiflow.controllers.manager import DONE, Controller, ControllerManager, Result
from lumiflow.store import SQLStore, StoredObject
from lumiflow.store.model import ObjectRef


class _Owner(Controller):
    kind = "Experiment"
    owns = ("Trial",)

    def reconcile(self, key: ObjectRef) -> Result:
        return DONE


class _PhaseOwner(_Owner):
    wake_on_child_phase_only = True


def _drain(controller: Controller) -> int:
    woken = len(controller.queue)
    while len(controller.queue):
        key = controller.queue.get()
        assert key is not None
        controller.queue.done(key)
    return woken


@pytest.mark.timeout(30)
@pytest.mark.parametrize("phase_only", [False, True])
def test_an_owner_is_woken_by_its_childrens_changes(tmp_path: Path, phase_only: bool) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        manager = ControllerManager(store)
        owner_ctl = (_PhaseOwner if phase_only else _Owner)(store)
        manager.add(owner_ctl)
        exp = store.create(
            StoredObject(kind="Experiment", api_version="v1", profile="p", name="exp", spec={})
        )
        _drain(owner_ctl)
        refs = [{"apiVersion": "v1", "kind": "Experiment", "name": "exp", "uid": exp.uid, "controller": True}]
        store.create(
            StoredObject(
                kind="Trial", api_version="v1", profile="p", name="t", spec={}, owner_references=refs
            )
        )
        # A new child wakes its owner, unless the owner made it and waits for its first phase.
        assert _drain(owner_ctl) == (0 if phase_only else 1)

        store.update_status("Trial", "p", "t", {"phase": "Running"})
        assert _drain(owner_ctl) == 1  # a new phase always does
        store.update_status("Trial", "p", "t", {"phase": "Running", "observation": {"metrics": []}})
        assert _drain(owner_ctl) == (0 if phase_only else 1)  # the same phase: only if it cares
        trial = store.get("Trial", "p", "t")
        store.update(trial.copy(spec={"stop": {"reason": "Killed"}}))
        assert _drain(owner_ctl) == 1  # spec changes always do
        store.update_status("Trial", "p", "t", {"phase": "Succeeded"})
        assert _drain(owner_ctl) == 1
        store.request_delete("Trial", "p", "t")
        assert _drain(owner_ctl) == 1
    finally:
        store.close()
