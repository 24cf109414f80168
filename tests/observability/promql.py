"""Just enough PromQL lexing to list the metric names an expression selects.

Syntax itself is checked by the real parser (promtool, and the Prometheus query API in the
end-to-end test); this only has to tell metric names from functions, keywords, label names
and label values, which a token walk does reliably.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+\.?\d*(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?))
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>[(){},]|=~|!~|!=|==|>=|<=|[-+*/%^=<>])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)
#: Words that take a parenthesized list of label names.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
#: Aggregation operators, which may be followed by ``by (...)`` instead of ``(``.
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile"}
)  # fmt: skip
_KEYWORDS = (
    _LABEL_LIST_KEYWORDS
    | _AGGREGATIONS
    | {"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"}
)
#: Grafana's variables, replaced by values that keep the expression valid PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".*",
    "$provider": ".*",
    "${datasource}": "prometheus",
}


def substitute_grafana_variables(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot lex {expr[pos:]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def metric_names(expr: str) -> set[str]:
    """Names of the metrics ``expr`` selects: identifiers that are not functions (followed by
    ``(``), keywords, label names in ``by (...)``-style lists, or inside ``{...}`` matchers."""
    toks = tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if text == "{":
            i = _skip_to(toks, i, "}")
        elif kind == "ident" and text in _LABEL_LIST_KEYWORDS and following == "(":
            i = _skip_to(toks, i + 1, ")")
        elif kind == "ident" and text not in _KEYWORDS and following != "(":
            names.add(text)
        i += 1
    return names


def _skip_to(toks: list[tuple[str, str]], start: int, closing: str) -> int:
    for j in range(start, len(toks)):
        if toks[j][1] == closing:
            return j
    raise ValueError(f"unbalanced expression: no {closing!r} after token {start}")


def label_values_metric(query: str) -> str | None:
    """The metric of a Grafana ``label_values(metric{...}, label)`` variable query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", query)
    return match.group(1) if match else None
