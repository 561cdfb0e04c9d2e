"""The named queries of queries/*.sql, run locally in DuckDB over report files
laid out as in the report bucket (findings/scan_date=.../*.jsonl and
scans/scan_date=.../*.json).

The views get their columns and types from the Glue tables in template.yaml,
so a column Athena would not find, or a value its type would not read, fails
here too. The queries run unchanged: `findings` and `scans` are bound to the
views, as the named queries' database binds them in Athena.
"""

import re
from pathlib import Path

import duckdb

from localcloud import ROOT, template

QUERIES = ROOT / "queries"
TABLES = {"findings": "FindingsTable", "scans": "ScansTable"}
DUCKDB_TYPES = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "double": "DOUBLE",
                "boolean": "BOOLEAN", "timestamp": "TIMESTAMP", "date": "DATE"}


def duckdb_type(kind):
    """A Glue (Hive) type in DuckDB's words, `array<struct<a:string,…>>` included."""
    if kind in DUCKDB_TYPES:
        return DUCKDB_TYPES[kind]
    simple = re.fullmatch(r"array<([a-z]+)>", kind)
    if simple:
        return f"{DUCKDB_TYPES[simple.group(1)]}[]"
    inner = re.fullmatch(r"array<struct<(.+)>>", kind)
    if not inner:
        raise ValueError(f"no DuckDB type for Glue type {kind}")
    fields = ", ".join(f"{name} {DUCKDB_TYPES[t]}" for name, t in (f.split(":") for f in inner.group(1).split(",")))
    return f"STRUCT({fields})[]"


class Query:
    def __init__(self, path):
        self.path = path
        self.sql = path.read_text()
        header = dict(re.findall(r"^-- (name|description): (.+)$", self.sql, re.M))
        if "name" not in header or "description" not in header:
            raise ValueError(f"{path.name}: the first lines must be '-- name: ...' and '-- description: ...'")
        self.name, self.description = header["name"], header["description"]

    def __repr__(self):
        return self.path.name


def queries():
    return [Query(p) for p in sorted(QUERIES.glob("*.sql"))]


def glue_tables(parsed=None):
    """Table name -> (columns [(name, glue type)], partition keys [(name, glue type)])."""
    parsed = parsed or template()
    out = {}
    for table, logical in TABLES.items():
        table_input = parsed["Resources"][logical]["Properties"]["TableInput"]
        assert table_input["Name"] == table, (logical, table_input["Name"])
        columns = [(c["Name"], c["Type"]) for c in table_input["StorageDescriptor"]["Columns"]]
        partitions = [(c["Name"], c["Type"]) for c in table_input["PartitionKeys"]]
        out[table] = (columns, partitions)
    return out


def connect(reports_dir):
    """A DuckDB connection with `findings` and `scans` views over reports_dir."""
    reports_dir = Path(reports_dir)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # Athena sessions are UTC
    for table, (columns, partitions) in glue_tables().items():
        spec = ", ".join(f"'{name}': '{duckdb_type(kind)}'" for name, kind in columns)
        hive_types = ", ".join(f"'{name}': '{DUCKDB_TYPES[kind]}'" for name, kind in partitions)
        files = sorted((reports_dir / table).glob("scan_date=*/*.json*"))
        if files:
            listed = ", ".join(f"'{f.as_posix()}'" for f in files)
            source = (f"read_json([{listed}], format = 'newline_delimited', columns = {{{spec}}}, "
                      f"hive_partitioning = true, hive_types = {{{hive_types}}}, "
                      f"timestampformat = '%Y-%m-%dT%H:%M:%S.%gZ')")
        else:  # no reports yet: an empty table of the right shape
            typed = ", ".join(f"CAST(NULL AS {duckdb_type(k)}) AS {n}" for n, k in columns + partitions)
            source = f"(SELECT {typed} WHERE false)"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {source}")
    return con


def run(con, query):
    """(column names, rows) of one query."""
    cursor = con.execute(query.sql)
    return [d[0] for d in cursor.description], cursor.fetchall()
