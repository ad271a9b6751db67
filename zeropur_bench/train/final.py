"""A finished run's final record: ``model.pt`` (test accuracy measured
as :func:`zeropur_bench.classifiers.load_classifier` will run it) and ``train_log.json``."""
from __future__ import annotations

from typing import Any

import torch

from ..data import load_data
from ..fsio import write_json_atomic
from .common import device_info, no_tf32, to_cpu, write_atomic
from .config import MODEL
from .state import Run, model_meta

def finalize(run: Run) -> dict[str, Any]:
    """The final checkpoint's metadata; test accuracy measured exactly as ``load_classifier`` will run it
    (fp32, contiguous, batches of 500, so the first batch is the first 500 images). On a GPU the whole test set
    runs there in plain fp32 (TF32 off) and the first 500 again on the CPU, where ``correct_first500`` (what
    :func:`zeropur_bench.train.ship` and the tests recheck) is counted; the run's model ends on the CPU."""
    from ..classifiers import Normalized, freeze

    c, net, dev, norm = run.config, run.net, run.dev, run.norm
    meta = model_meta(run, device_info(dev))
    if c.eval_test:
        x_te, y_te, te_info = load_data(c.dataset, "test", n=c.n_test, data_dir=c.data_dir, return_info=True)
        model = freeze(Normalized(net.to(memory_format=torch.contiguous_format), norm["mean"], norm["std"]).to(dev))
        with torch.no_grad(), no_tf32(dev):
            pred = torch.cat([model(x_te[i:i + 500].to(dev)).argmax(1).cpu() for i in range(0, len(x_te), 500)])
        ok = pred == y_te
        meta["data"]["test"] = te_info.to_dict()
        meta.update(test_acc=int(ok.sum()) / len(ok), test_correct=int(ok.sum()), test_n=len(ok),
                    correct_first500=int(ok[:500].sum()))
        meta["test_eval"] = {"device": str(dev), "precision": "fp32" if dev.type == "cpu" else "fp32 (TF32 off)",
                             "batch_size": 500}
        if dev.type != "cpu":
            model = model.cpu()
            meta["correct_first500_device"] = meta["correct_first500"]
            with torch.no_grad():
                meta["correct_first500"] = int((model(x_te[:500]).argmax(1) == y_te[:500]).sum())
        # the count must be reproducible by whoever loads the file: check it does not depend on the thread count
        threads = torch.get_num_threads()
        by_threads = {}
        for t in sorted({1, 2, threads}):
            torch.set_num_threads(t)
            with torch.no_grad():
                by_threads[str(t)] = int((model(x_te[:500]).argmax(1) == y_te[:500]).sum())
        torch.set_num_threads(threads)
        meta["correct_first500_by_threads"] = by_threads
        net.train()
    elif dev.type != "cpu":
        net.cpu()
    return meta


def finish(run: Run) -> dict[str, Any]:
    """Write a finished run's ``model.pt`` and ``train_log.json``; returns ``{'finished': True, **metadata}``."""
    meta = finalize(run)
    net, out = run.net, run.out
    write_atomic({"state_dict": net.state_dict() if run.on_cpu else to_cpu(net.state_dict()), **meta}, out / MODEL)
    write_json_atomic(out / "train_log.json", meta)
    run.say(f"[{out.name}] finished: test_acc {meta.get('test_acc')} correct_first500 {meta.get('correct_first500')} "
            f"→ {out / MODEL}")
    return {"finished": True, **meta}
