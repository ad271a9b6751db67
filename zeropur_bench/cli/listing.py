"""``zeropur-bench list``: what there is to run (datasets, classifiers, architectures, attacks, defenses, profiles,
blurs)."""
from __future__ import annotations

import click

from ..errors import friendly


@click.command("list")
@click.option("--plugin", "plugins", multiple=True, help="A Python file that registers defenses (listed too).")
@friendly
def list_cmd(plugins: tuple[str, ...]) -> None:
    """List datasets, built-in architectures, attacks with their defaults, registered defenses (built in, installed
    plugins, --plugin files), defense profiles and blurs.

    \b
    Example:
      zeropur-bench list --plugin my_purifiers.py
    """
    import pandas as pd

    from .. import registry
    from ..archs import ARCHS
    from ..attacks import ATTACKS
    from ..data import DATASETS
    from ..defense import PROFILES, all_defenses
    from ..defense.blur import BLURS
    from ..defense import load_plugin
    from ..fmt import fmt_value
    from ..runspec import DEFAULT_PROFILE

    for plugin in plugins:
        load_plugin(plugin)

    click.echo("Datasets:")
    click.echo(pd.DataFrame([{"dataset": k, "classes": v["num_classes"], "splits": ", ".join(v["splits"])}
                             for k, v in DATASETS.items()]).to_markdown(index=False))
    click.echo("\nShipped and registered classifiers (--model NAME; zeropur_bench/weights/registry.json):")
    click.echo(pd.DataFrame([{"name": e.name, "dataset": e.dataset, "arch": e.arch, "recipe": e.recipe,
                              "test acc %": f"{100 * e.test_acc:.2f}" if e.test_acc is not None else "?",
                              "file": e.file, "sha256": e.sha256[:12]}
                             for e in registry.entries().values()]).to_markdown(index=False))
    click.echo("\nBuilt-in architectures (use with --checkpoint); any RobustBench zoo name also works:")
    click.echo(pd.DataFrame([{"name": a.name, "params (M)": a.params_m, "description": a.description}
                             for a in ARCHS.values()]).to_markdown(index=False))
    click.echo("\nAttacks (--attack NAME[:k=v,...]):")
    rows = []
    for name, cls in sorted(ATTACKS.items()):
        setting = "adaptive" if (cls.needs_defense or cls.adaptive_only) else "transfer, adaptive"
        rows.append({"attack": name, "settings": setting, "norms": ", ".join(cls.norms),
                     "defaults": ", ".join(f"{k}={fmt_value(v)}" for k, v in cls.defaults.items())})
    click.echo(pd.DataFrame(rows).to_markdown(index=False))
    click.echo("\nDefenses (--defense NAME[:k=v,...]; a purifier of your own: --plugin FILE or an installed package's "
               "entry point zeropur_bench.defenses):")
    click.echo(pd.DataFrame([{"defense": name, "source": e.source, "options": ", ".join(
        f"{k}={fmt_value(e.defaults[k])}" if k in e.defaults else k for k in e.option_specs
        if k in e.defaults or e.source != "built-in") or ("profile knobs (--zp)" if e.open_options else "-"),
        "what": e.summary} for name, e in sorted(all_defenses().items(), key=lambda t: (t[1].order, t[0]))])
        .to_markdown(index=False))
    click.echo(f"\nZeroPur profiles (--profile; the default is {DEFAULT_PROFILE}, on the command line and in Python "
               f"alike: ZeroPur(classifier) is ZeroPur(classifier, profile='{DEFAULT_PROFILE}'); override single "
               "knobs with --zp k=v):")
    frame = pd.DataFrame({k: {kk: ("fitted per classifier (calibrate)" if vv is None and kk == "ila_weight" else
                                   fmt_value(vv)) for kk, vv in v.items()} for k, v in PROFILES.items()})
    click.echo(frame.to_markdown())
    click.echo("\nBlurs (--blur):")
    for form in BLURS.values():
        click.echo(f"  {form}")
