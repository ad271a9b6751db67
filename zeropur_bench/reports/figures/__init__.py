"""Figures from records (issue 15): ``zeropur-bench plot KIND --results DIR|FILE... --out FILE.png|.svg|.pdf``.

Every figure is drawn from run records (``zeropur-bench/record/v2``, read through
:class:`~zeropur_bench.records.RecordView`) or sanity reports (``zeropur-bench/sanity/v2``) with matplotlib's
object-oriented API on the Agg canvas (no display, no pyplot state), written atomically, with a sidecar CSV (same
path, ``.csv``) that holds exactly the numbers plotted (accuracies as the record's fractions, full precision), and
a caption line naming dataset, threat model and eps, model, defense variant(s), attack(s), n and setting, so one
image stands on its own.

Kinds (one public function each):

* ``steps`` (:func:`plot_steps`, paper Fig. 5): robust accuracy (95% Wilson band) against one purification
  parameter, one line per attack, plus the defended clean accuracy;
* ``grid`` (:func:`plot_grid`, Fig. 6): heat maps of robust accuracy over coarse × fine steps;
* ``attack-curve`` (:func:`plot_attack_curve`): any-step vs final-only robust accuracy over an adaptive attack's
  iterations;
* ``eps`` (:func:`plot_eps`): robust accuracy against eps, from sanity reports and/or records at several eps;
* ``cosine`` (:func:`plot_cosine`, Fig. 3): cos(f(x_t), f(x_nat)) over the coarse-shifting iterates;
* ``images`` (:func:`plot_images`, Figs. 4, 7–9): clean / adversarial / coarse / purified examples.

Modules: :mod:`.common` (inputs, output, captions), :mod:`.sweeps` (steps, grid), :mod:`.curves` (attack-curve,
eps), :mod:`.reproduction` (recomputing a few examples through the engine), :mod:`.examples` (cosine, images).
Only ``cosine`` and ``images`` compute anything, and only for the examples they show.
"""
from __future__ import annotations

from .common import FIG_SUFFIXES, SANITY_SCHEMA, Source, check_out, load_sources
from .curves import plot_attack_curve, plot_eps
from .examples import plot_cosine, plot_images
from .sweeps import plot_grid, plot_steps

KINDS = ("steps", "grid", "attack-curve", "eps", "cosine", "images")
RECOMPUTING = ("cosine", "images")  # the kinds that re-run the record's attack on the examples they show

__all__ = ["FIG_SUFFIXES", "KINDS", "RECOMPUTING", "SANITY_SCHEMA", "Source", "check_out", "load_sources",
           "plot_attack_curve", "plot_cosine", "plot_eps", "plot_grid", "plot_images", "plot_steps"]
