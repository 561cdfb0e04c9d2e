"""`make query`: runs the named queries (queries/*.sql) in DuckDB over the
reports that `make demo` saved, and prints each result as a table.

    python local/query.py [--reports DIR] [QUERY ...]

QUERY is a file name or a query name, in part (`top-cves`, `01`).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from athena_local import connect, queries, run  # noqa: E402
from localcloud import ROOT  # noqa: E402

DEFAULT_REPORTS = ROOT / ".local" / "demo-reports"


def table(columns, rows, indent="  "):
    cells = [columns] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, indent + "  ".join("-" * w for w in widths))
    if not rows:
        lines.append(indent + "(no rows)")
    return "\n".join(lines)


def print_queries(reports_dir, selected=None):
    con = connect(reports_dir)
    chosen = [q for q in queries() if not selected or any(s in q.path.name or s in q.name for s in selected)]
    if selected and not chosen:
        raise SystemExit(f"no query matches {selected}; the queries are {[q.path.name for q in queries()]}")
    for query in chosen:
        columns, rows = run(con, query)
        print(f"\n{query.path.name} ({query.name}): {query.description}")
        print(table(columns, rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS,
                        help=f"a copy of the report bucket (default: {DEFAULT_REPORTS.relative_to(ROOT)}, written by make demo)")
    parser.add_argument("query", nargs="*", help="file or query name, in part; default every query")
    args = parser.parse_args()
    if not (args.reports / "scans").is_dir():
        print(f"no reports in {args.reports}: run `make demo` first, or pass --reports DIR "
              "(for example a copy of your bucket: aws s3 sync s3://BUCKET DIR --exclude 'reports/*')", file=sys.stderr)
        return 2
    print(f"Reports in {args.reports}")
    print_queries(args.reports, args.query)
    return 0


if __name__ == "__main__":
    sys.exit(main())
