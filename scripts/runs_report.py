#!/usr/bin/env python3
"""Every run of a scripts/compare.sh invocation, and ratios between any two of its brokers.

    python3 scripts/runs_report.py RESULTS_DIR [A/B ...] [--metric NAME ...]

For each scenario and figure (compare_report.py's figures; `--metric` keeps only those
named), one line per broker with every round's value in round order and min–median–max,
then, for each pair A/B given, the same-round ratios A ÷ B and their median. Figures are
divided only between runs that did the same work (compare_report.comparable: the same
clients connected, and for a message figure the same share delivered); a round that did
not is shown as `n/a` with the reason.
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_report import CONNECT, MESSAGE, Table, comparable, metrics  # noqa: E402


def num(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{num(min(values))} – {num(statistics.median(values))} – {num(max(values))}"


def main(argv):
    args = argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    results, pairs, wanted = args[0], [], []
    rest = iter(args[1:])
    for a in rest:
        if a == "--metric":
            wanted.append(next(rest))
        else:
            pairs.append(tuple(a.split("/", 1)))
    table = Table(results)
    n_specs = len([f for f in os.listdir(results) if f.endswith(".spec")])
    for n in range(1, n_specs + 1):
        spec = open(os.path.join(results, f"{n}.spec")).read().strip()
        rounds = table.runs(n)
        print(f"\n## `{spec}` ({len(rounds)} rounds)")
        keys = {}
        for reports in rounds.values():
            for report in reports.values():
                for key, (_, kind) in metrics(report).items():
                    keys.setdefault(key, kind)
        for key, kind in keys.items():
            if wanted and key.strip() not in wanted:
                continue
            print(f"\n{key.strip()}")
            for b in table.brokers:
                values = [metrics(r.get(b)).get(key, (None,))[0] for r in rounds.values()]
                if isinstance(next((v for v in values if v is not None), 0), str):
                    print(f"  {b:<22} {' / '.join(str(v) for v in values)}")
                    continue
                runs = " / ".join(num(v) for v in values)
                print(f"  {b:<22} {runs}   (min–median–max {spread(values)})")
            if kind not in (CONNECT, MESSAGE):
                continue
            for a, b in pairs:
                ratios, shown = [], []
                for r, reports in rounds.items():
                    ra, rb = reports.get(a), reports.get(b)
                    va = metrics(ra).get(key, (None,))[0]
                    vb = metrics(rb).get(key, (None,))[0]
                    ok, why = comparable(ra, rb, kind)
                    if va is None or not vb:
                        shown.append("-")
                    elif not ok:
                        shown.append(f"n/a ({why[0]}; {why[1]})")
                    else:
                        ratios.append(va / vb)
                        shown.append(f"{va / vb:.3f}")
                median = f"{statistics.median(ratios):.3f}" if ratios else "-"
                print(f"  {a}/{b}: {' / '.join(shown)}   (median {median})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
