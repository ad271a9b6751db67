"""Recomputing a few examples of a record (for ``cosine`` and ``images``), exactly as the run made them.

:class:`Reproduction` rebuilds the record's classifier, data, one attack and one defense variant through the
engine (:class:`~zeropur_bench.evaluate.Evaluator`), checks that they are the record's (checkpoint and data
sha256, example indices, the defense's resolved settings, the attack's column), and re-runs
:meth:`Evaluator.run_batch` on the whole batches that hold the chosen examples (the record's batch size and seed:
per-batch seeding makes that exact). The engine's judgements are compared with the record's, and a difference is
refused with one line, so a figure never shows an outcome the record does not hold.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

from ...errors import UserError
from ...keys import canon, describe_diff
from .common import Source


class Reproduction:
    """One attack and one defense variant of a record, rebuilt and checked (module docstring)."""

    def __init__(self, source: Source, *, attack: str | None = None, variant: str | None = None,
                 data_dir: str | os.PathLike | None = None, checkpoint: str | None = None,
                 device: str | None = None) -> None:
        from ...check import config_from_record
        from ...evaluate import Evaluator

        rv = source.record
        self.source, self.record = source, rv
        keys = rv.attack_keys
        self.attack = attack or keys[0]
        if self.attack not in keys:
            raise UserError(f"{source.name} has no attack {self.attack!r}; it ran: {', '.join(keys)}")
        self.variant = variant or rv.primary
        if self.variant not in rv.variants:
            raise UserError(f"{source.name} has no defense variant {self.variant!r}; it has: "
                            f"{', '.join(rv.variants)}")
        if rv.variants[self.variant].name == "none":
            raise UserError(f"variant {self.variant!r} of {source.name} is the bare classifier; choose a ZeroPur "
                            "variant with --variant")
        try:
            cfg = config_from_record(rv.raw["config"])
        except (KeyError, TypeError) as exc:
            raise UserError(f"{source.name}: cannot rebuild its configuration ({exc})") from None
        spec = cfg.attacks[keys.index(self.attack)]
        vspec = next(d for d in cfg.defenses if d.key == self.variant)
        changes: dict[str, Any] = {"attacks": [spec], "defenses": [vspec]}
        if checkpoint:
            changes["checkpoint"] = checkpoint
        if device:
            changes["device"] = device
        self.config = dataclasses.replace(cfg, **changes)
        self.ev = Evaluator(self.config, data_dir=data_dir)
        self.ev.prepare()
        self._check_inputs()

    def _check_inputs(self) -> None:
        rv, ev, name = self.record, self.ev, self.source.name
        want_model = rv.model_info.get("checkpoint_sha256")
        got_model = (ev.model_info or {}).get("checkpoint_sha256")
        if want_model and got_model != want_model:
            raise UserError(f"the classifier loaded now (checkpoint sha256 {str(got_model)[:12]}) is not the one "
                            f"{name} was made with ({want_model[:12]}); pass its checkpoint with --checkpoint")
        want_data = rv.data_info.get("sha256")
        if want_data and ev.data_info.get("sha256") != want_data:
            raise UserError(f"the data slice loaded now (sha256 {str(ev.data_info.get('sha256'))[:12]}) differs "
                            f"from {name}'s ({want_data[:12]}); point --data-dir at the same data")
        if [int(i) for i in ev.indices.tolist()] != rv.indices:
            raise UserError(f"the examples loaded now are not {name}'s")
        want_def = {k: v for k, v in rv.variants[self.variant].resolved.items() if k != "channels_last"}
        got_def = {k: v for k, v in ev.defense_config(self.variant).items() if k != "channels_last"}
        if canon(json.loads(json.dumps(got_def, default=str))) != canon(want_def):
            raise UserError(f"{self.variant} rebuilt now differs from {name}'s ({describe_diff(want_def, got_def)})"
                            "; the defense code changed since the record was made")
        if ev.attack_keys[0] != self.attack:
            raise UserError(f"the attack rebuilt now is named {ev.attack_keys[0]!r}, the record's {self.attack!r}")

    @property
    def defense(self) -> Any:
        """The rebuilt defense variant (a ZeroPur module)."""
        return self.ev.defenses[self.variant]

    @property
    def classifier(self) -> Any:
        return self.ev.classifier

    def positions(self, indices: Sequence[int]) -> list[int]:
        """Dataset indices → positions in the record."""
        where = {i: p for p, i in enumerate(self.record.indices)}
        bad = [i for i in indices if int(i) not in where]
        if bad:
            lo, hi = min(where), max(where)
            raise UserError(f"example {bad[0]} is not in {self.source.name} (it holds {len(where)} examples, dataset "
                            f"indices {lo}..{hi})")
        return [where[int(i)] for i in indices]

    def run(self, positions: Sequence[int]) -> dict:
        """Re-run the engine on the batches holding ``positions`` (:meth:`Evaluator.run_batch`); returns x, y,
        indices and the attack's input x_adv of those examples with the bare classifier's predictions on x and
        x_adv; refuses if the engine's judgements differ from the record's."""
        import torch

        from ...inputs import autocast

        c, ev = self.config, self.ev
        x_all, y_all = ev.data
        bs = c.batch_size
        want = sorted(set(positions))
        rows: dict[int, dict] = {}
        for _, s in ev.plan():
            inside = [p for p in want if s <= p < s + bs]
            if not inside:
                continue
            xb, yb = x_all[s: s + bs].to(c.device), y_all[s: s + bs].to(c.device)
            idx = ev.indices[s: s + bs]
            res = ev.run_batch(xb, yb, idx, keep_inputs=True)
            x_adv = res.inputs[self.attack]["bare" if c.setting == "transfer" else self.variant]
            bare_adv = res.bare_adv_correct.get(self.attack)
            judged = res.variants[self.variant]
            for p in inside:
                j = p - s
                rows[p] = {"x": xb[j], "y": yb[j], "index": idx[j], "x_adv": x_adv[j],
                           "adv_correct": judged.adv_correct[self.attack][j],
                           "clean_correct": res.clean_correct[j],
                           "bare_adv_correct": bare_adv[j] if bare_adv is not None else None}
        order = list(positions)
        x = torch.stack([rows[p]["x"] for p in order])
        y = torch.stack([rows[p]["y"] for p in order])
        x_adv = torch.stack([rows[p]["x_adv"] for p in order])
        with autocast(c.device, c.dtype), torch.no_grad():
            bare_adv_pred = self.classifier(x_adv).argmax(1).cpu()
            bare_clean_pred = self.classifier(x).argmax(1).cpu()
        for j, p in enumerate(order):  # adaptive runs judge no bare classifier on their inputs: judged here
            if rows[p]["bare_adv_correct"] is None:
                rows[p]["bare_adv_correct"] = bool(bare_adv_pred[j] == y[j].cpu())
        self._verify(order, rows)
        return {"positions": order, "x": x, "y": y, "indices": torch.stack([rows[p]["index"] for p in order]),
                "x_adv": x_adv, "adv_correct": torch.tensor([bool(rows[p]["adv_correct"]) for p in order]),
                "bare_adv_pred": bare_adv_pred, "bare_clean_pred": bare_clean_pred}

    def _verify(self, order: Sequence[int], rows: dict[int, dict]) -> None:
        rv = self.record
        ex = rv.variants[self.variant].examples
        checks = [("adv_correct", f"{self.variant} on the adversarial input", ex["adv_correct"][self.attack]),
                  ("clean_correct", "the bare classifier on the clean image", ex["clean_correct"])]
        bare = rv.bare
        if bare and self.attack in ((bare.get("examples") or {}).get("adv_correct") or {}):
            checks.append(("bare adv_correct", "the bare classifier on the adversarial input",
                           bare["examples"]["adv_correct"][self.attack]))
        for name, what, recorded in checks:
            field = name.replace(" ", "_")
            for p in order:
                now = rows[p][field]
                if bool(recorded[p]) != bool(now):
                    raise UserError(f"example {rv.indices[p]} does not reproduce: {self.source.name} records {name}="
                                    f"{bool(recorded[p])} for {what} ({self.attack}), recomputed here "
                                    f"{bool(now)} (other hardware kernels, dtype or code version?); the figure "
                                    "would not show the recorded outcome")
