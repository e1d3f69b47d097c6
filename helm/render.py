#!/usr/bin/env python3
"""render.py: a small, strict stand-in for `helm template`, and the checks validate.sh runs.

Why: CI has no helm binary (and none can be installed here), yet the chart must be rendered and the
result validated. This renders helm/gitrev with a deliberately SMALL subset of Go text/template and
Sprig, and fails loudly on anything outside it, so it can never silently mis-render. When helm is
available, validate.sh uses the real `helm template` and only the `check` command of this file.

Commands
    render.py template CHART [-f VALUES]... [--release-name N] [--namespace NS] [--notes]
        print the rendered manifests as one multi-document YAML stream (like `helm template`);
        --notes prints the rendered templates/NOTES.txt instead.
    render.py check FILE|- [--kube-version 1.30.0] [--external KIND/NAME]... [--expect-kind K]...
                    [--settings-source src/config.rs] [--metrics-source src/telemetry.rs]
                    [--runbooks docs/runbooks.md]
        check every document of a stream (ours or helm's): YAML, apiVersion/kind/metadata.name,
        kubernetes-validate --strict for built-in kinds, hand-written checks for the CRDs
        (ServiceMonitor, PrometheusRule), and cross-document checks specific to this chart.
    render.py selftest
        the renderer's own test cases (whitespace trimming, scoping, Go number printing, errors).
    render.py doc-check CHART
        every values.yaml key is commented, and README.md's values table matches the comments.
    render.py compare A B
        semantic difference of two rendered streams (validate.sh compares helm's with ours).

The template subset (anything else is an error, at parse time when possible)
    data        .Values.* .Release.Name .Release.Namespace .Release.Service
                .Chart.Name .Chart.Version .Chart.AppVersion   .Files.Get "path"
                variables $ and $name (declared with :=, assigned with =), field chains on
                variables and on parenthesised pipelines: (...).field
    literals    "strings" (Go escapes), `raw strings`, integers, floats, true, false, nil
    actions     {{ pipeline }}, pipelines with |, parentheses, {{/* comments */}},
                whitespace trimming {{- and -}}
    control     if / else if / else / end, with / else / end, range (lists and maps, sorted keys;
                `range $v := x`, `range $k, $v := x`) / else / end, define / end
    functions   include required fail toYaml toJson nindent indent quote default printf trunc
                trimSuffix sha256sum eq ne lt le gt ge and or not
    printf      verbs %s %d %v %q %% only, without flags, width or precision

Go/Helm semantics kept on purpose (they are where charts go wrong)
    - numbers from values files are float64, as in Helm: `{{ .Values.n }}` of 1000000 prints
      1e+06, `eq .Values.n 1` is an "incompatible types for comparison" error, and a float passed
      to an int parameter (trunc, indent) is a "wrong type" error.
    - `quote` and `printf %v` print numbers the way Go does (shortest form, %g switch at 1e+06).
    - toYaml: keys sorted, integral floats as integers, one trailing newline removed.
    - map range order is sorted by key; `and`/`or` return an operand and short-circuit.
    - nil prints as "" (Helm's "<no value>" replacement).
Deliberately stricter than Helm
    - referencing a key that does not exist (e.g. a typo: .Values.serivce.port) is an error
      (Helm renders it empty); .Files.Get of a missing file is an error (Helm returns "");
      a define of the same name twice is an error; printing a map or list is an error;
      printf verb/argument mismatches are errors (Go would print %!d(float64=1)).
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys

import yaml


class RenderError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Go values: kinds, truth, printing
# --------------------------------------------------------------------------------------------

NO_VALUE = object()  # "no piped value" marker


def go_type(v):
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, FilesObject):
        return "chart.Files"
    return type(v).__name__


def go_float(f):
    """strconv.FormatFloat(f, 'g', -1, 64), which is what fmt's %v prints for a float64."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    neg = f < 0
    r = repr(abs(f))  # Python's repr is the shortest round-tripping form, as Go's is
    m = re.fullmatch(r"(\d+)(?:\.(\d*))?(?:e([+-]\d+))?", r)
    if not m:
        raise RenderError(f"internal: cannot format float {r}")
    ip, fp, e = m.group(1), m.group(2) or "", int(m.group(3) or 0)
    digits = ip + fp
    dp = len(ip) + e
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    nd = len(digits)
    exp = dp - 1
    if exp < -4 or exp >= 6:  # shortest: Go uses precision 6 for this decision
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        s = f"{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= nd:
        s = digits + "0" * (dp - nd)
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def go_print(v, what="value"):
    """How an action prints a value (fmt's %v), failing on composite values."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return v
    raise RenderError(f"refusing to print a {go_type(v)} as {what} (use toYaml/toJson)")


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(s):
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        elif ch != " " and not ch.isprintable():
            out.append("\\u%04x" % ord(ch) if ord(ch) < 0x10000 else "\\U%08x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def truthy(v):
    """text/template's isTrue (and, negated, Sprig's empty)."""
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, dict)):
        return len(v) > 0
    return True


def to_go_json_value(v):
    """What encoding/json sees for a value: integral floats print as integers."""
    if isinstance(v, float) and not isinstance(v, bool):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e21:
            return int(v)
        if not math.isfinite(v):
            raise RenderError("json: unsupported value: " + go_float(v))
        return v
    if isinstance(v, list):
        return [to_go_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_go_json_value(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    raise RenderError(f"cannot serialise a {go_type(v)}")


class _YamlDumper(yaml.SafeDumper):
    pass


def to_yaml(v):
    """Helm's toYaml: sigs.k8s.io/yaml marshal, trailing newline removed."""
    data = to_go_json_value(v)
    text = yaml.dump(data, Dumper=_YamlDumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30)
    if text.endswith("\n...\n"):  # PyYAML's explicit document end after a bare scalar
        text = text[: -len("...\n")]
    return text[:-1] if text.endswith("\n") else text


def to_json(v):
    text = json.dumps(to_go_json_value(v), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    # encoding/json escapes these for HTML safety
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class FilesObject:
    """The `.Files` object; only Get is offered."""

    def __init__(self, chart_dir):
        self.chart_dir = os.path.abspath(chart_dir)

    def get(self, path):
        norm = os.path.normpath(path)
        if norm.startswith("..") or os.path.isabs(norm):
            raise RenderError(f".Files.Get {path!r}: outside the chart")
        if norm.split(os.sep)[0] == "templates":
            raise RenderError(f".Files.Get {path!r}: templates/ is not part of .Files in Helm")
        full = os.path.join(self.chart_dir, norm)
        if not os.path.isfile(full):
            raise RenderError(f".Files.Get {path!r}: no such file in the chart "
                              "(Helm would silently return an empty string)")
        with open(full, encoding="utf-8") as fh:
            return fh.read()


# --------------------------------------------------------------------------------------------
# Lexing: template text into text pieces and actions
# --------------------------------------------------------------------------------------------

_WS = " \t\r\n"


class Item:
    __slots__ = ("kind", "text", "tokens", "line")

    def __init__(self, kind, text, line, tokens=None):
        self.kind, self.text, self.line, self.tokens = kind, text, line, tokens


def lex_template(src, name):
    """Split into text and action items, applying {{- and -}} trimming."""
    items = []
    i = 0
    pending_trim = False
    while True:
        j = src.find("{{", i)
        text = src[i:] if j < 0 else src[i:j]
        if pending_trim:
            text = text.lstrip(_WS)
        if j < 0:
            items.append(Item("text", text, src.count("\n", 0, i) + 1))
            break
        line = src.count("\n", 0, j) + 1
        k = j + 2
        trim_left = src.startswith("-", k) and k + 1 < len(src) and src[k + 1] in _WS
        if trim_left:
            text = text.rstrip(_WS)
            k += 2
        items.append(Item("text", text, line))
        # comment?
        kk = k
        if src.startswith("/*", kk):
            end = src.find("*/", kk + 2)
            if end < 0:
                raise RenderError(f"{name}:{line}: unclosed comment")
            after = end + 2
            if src.startswith("}}", after):
                trim_right, i = False, after + 2
            elif src.startswith(" -}}", after):
                trim_right, i = True, after + 4
            else:
                raise RenderError(f"{name}:{line}: comment ends without closing delimiter")
            pending_trim = trim_right
            continue
        # scan to the closing }} outside string literals
        p = k
        while True:
            if p >= len(src):
                raise RenderError(f"{name}:{line}: unclosed action")
            c = src[p]
            if c == '"':
                p += 1
                while p < len(src) and src[p] != '"':
                    if src[p] == "\\":
                        p += 1
                    if p < len(src) and src[p] == "\n":
                        raise RenderError(f"{name}:{line}: newline in string literal")
                    p += 1
                p += 1
                continue
            if c == "`":
                q = src.find("`", p + 1)
                if q < 0:
                    raise RenderError(f"{name}:{line}: unterminated raw string")
                p = q + 1
                continue
            if c == "'":
                raise RenderError(f"{name}:{line}: character constants are not supported")
            if src.startswith("}}", p):
                break
            p += 1
        content_end = p
        trim_right = p - 2 >= k and src[p - 1] == "-" and src[p - 2] in _WS
        if trim_right:
            content_end = p - 1
        content = src[k:content_end]
        items.append(Item("action", content, line, tokenize(content, name, line)))
        pending_trim = trim_right
        i = p + 2
    return items


_TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<decl>:=)
  | (?P<assign>=)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<pipe>\|)
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F]+
                     |\d+\.\d*(?:[eE][+-]?\d+)?
                     |\d+(?:[eE][+-]?\d+)?
                     |\.\d+(?:[eE][+-]?\d+)?))
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


class Token:
    __slots__ = ("kind", "text", "spaced")

    def __init__(self, kind, text, spaced):
        self.kind, self.text, self.spaced = kind, text, spaced

    def __repr__(self):
        return f"{self.kind}:{self.text}"


def tokenize(content, name, line):
    tokens = []
    pos = 0
    spaced = True
    while pos < len(content):
        m = _TOKEN_RE.match(content, pos)
        if not m:
            raise RenderError(f"{name}:{line}: cannot parse action near {content[pos:pos + 20]!r}")
        kind = m.lastgroup
        if kind == "ws":
            spaced = True
        else:
            tokens.append(Token(kind, m.group(), spaced))
            spaced = False
        pos = m.end()
    return tokens


def unquote_go(lit, where):
    if lit.startswith("`"):
        return lit[1:-1]
    body = lit[1:-1]
    out = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif n == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif n == "U":
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif n in "01234567":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise RenderError(f"{where}: bad escape \\{n} in string literal")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Parsing: items into a tree
# --------------------------------------------------------------------------------------------

KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
            "continue"}


class Node:
    pass


class Text(Node):
    def __init__(self, text):
        self.text = text


class Action(Node):
    def __init__(self, pipe, where):
        self.pipe, self.where = pipe, where


class Branch(Node):
    def __init__(self, kind, pipe, body, else_body, where):
        self.kind, self.pipe, self.body = kind, pipe, body
        self.else_body, self.where = else_body, where


class Pipeline:
    def __init__(self, decl, is_assign, cmds):
        self.decl, self.is_assign, self.cmds = decl, is_assign, cmds


class Literal:
    def __init__(self, value):
        self.value = value


class Nil:
    pass


class Dot:
    pass


class Field:
    def __init__(self, chain):
        self.chain = chain


class Var:
    def __init__(self, name, chain):
        self.name, self.chain = name, chain


class Paren:
    def __init__(self, pipe, chain):
        self.pipe, self.chain = pipe, chain


class Func:
    def __init__(self, name):
        self.name = name


class Parser:
    def __init__(self, items, name, defines):
        self.items, self.name, self.defines = items, name, defines
        self.i = 0

    def where(self, item):
        return f"{self.name}:{item.line}"

    def parse(self):
        nodes, term = self.parse_body(top=True)
        if term is not None:
            raise RenderError(f"{self.where(term)}: unexpected {{{{{term.tokens[0].text}}}}}")
        return nodes

    def parse_body(self, top=False):
        nodes = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if item.kind == "text":
                if item.text:
                    nodes.append(Text(item.text))
                continue
            toks = item.tokens
            if not toks:
                raise RenderError(f"{self.where(item)}: empty action")
            head = toks[0]
            if head.kind == "ident" and head.text in KEYWORDS:
                kw = head.text
                if kw in ("end", "else"):
                    return nodes, item
                if kw in ("if", "with", "range"):
                    nodes.append(self.parse_branch(kw, item, toks[1:]))
                elif kw == "define":
                    if not top:
                        raise RenderError(f"{self.where(item)}: define must be at top level")
                    self.parse_define(item, toks[1:])
                else:
                    raise RenderError(f"{self.where(item)}: '{kw}' is outside the supported "
                                      "subset (use include)")
            else:
                nodes.append(Action(self.parse_pipeline(toks, item, decl_max=1),
                                    self.where(item)))
        return nodes, None

    def parse_branch(self, kw, item, rest):
        if not rest:
            raise RenderError(f"{self.where(item)}: missing value for {kw}")
        pipe = self.parse_pipeline(rest, item, decl_max=2 if kw == "range" else 1)
        if pipe.is_assign and kw == "range":
            raise RenderError(f"{self.where(item)}: range needs :=")
        body, term = self.parse_body()
        if term is None:
            raise RenderError(f"{self.where(item)}: unexpected EOF: {kw} without end")
        tt = term.tokens
        else_body = None
        if tt[0].text == "else":
            if len(tt) > 1:
                if tt[1].kind == "ident" and tt[1].text == "if" and kw == "if":
                    else_body = [self.parse_branch("if", term, tt[2:])]
                    return Branch(kw, pipe, body, else_body, self.where(item))
                raise RenderError(f"{self.where(term)}: only 'else if' inside an if is "
                                  "supported")
            else_body, term2 = self.parse_body()
            if term2 is None or term2.tokens[0].text != "end":
                raise RenderError(f"{self.where(term)}: else without end")
            if len(term2.tokens) > 1:
                raise RenderError(f"{self.where(term2)}: unexpected tokens after end")
        elif len(tt) > 1:
            raise RenderError(f"{self.where(term)}: unexpected tokens after end")
        return Branch(kw, pipe, body, else_body, self.where(item))

    def parse_define(self, item, rest):
        if len(rest) != 1 or rest[0].kind not in ("string", "raw"):
            raise RenderError(f"{self.where(item)}: define needs one quoted name")
        dname = unquote_go(rest[0].text, self.where(item))
        body, term = self.parse_body()
        if term is None or term.tokens[0].text != "end" or len(term.tokens) != 1:
            raise RenderError(f"{self.where(item)}: define {dname!r} without a plain end")
        if dname in self.defines:
            raise RenderError(f"{self.where(item)}: template {dname!r} defined twice")
        self.defines[dname] = (body, self.where(item))

    def parse_pipeline(self, toks, item, decl_max):
        where = self.where(item)
        decl, is_assign = [], False
        # declaration:  $a :=   $a, $b :=   $a =
        k = 0
        names = []
        while k < len(toks) and toks[k].kind == "var" and "." not in toks[k].text:
            names.append(toks[k].text)
            if k + 1 < len(toks) and toks[k + 1].kind == "comma":
                k += 2
                continue
            k += 1
            break
        if names and k < len(toks) and toks[k].kind in ("decl", "assign"):
            if len(names) > decl_max:
                raise RenderError(f"{where}: too many declarations")
            decl, is_assign = names, toks[k].kind == "assign"
            toks = toks[k + 1:]
        pipe, pos = self.parse_cmds(toks, 0, where, inner=False)
        if pos != len(toks):
            raise RenderError(f"{where}: unexpected {toks[pos].text!r}")
        return Pipeline(decl, is_assign, pipe)

    def parse_cmds(self, toks, pos, where, inner):
        cmds = []
        while True:
            cmd = []
            while pos < len(toks) and toks[pos].kind not in ("pipe", "rparen"):
                operand, pos = self.parse_operand(toks, pos, where)
                cmd.append(operand)
            if not cmd:
                raise RenderError(f"{where}: missing command in pipeline")
            cmds.append(cmd)
            if pos < len(toks) and toks[pos].kind == "pipe":
                pos += 1
                continue
            break
        if pos < len(toks) and toks[pos].kind == "rparen" and not inner:
            raise RenderError(f"{where}: unexpected )")
        return cmds, pos

    def parse_operand(self, toks, pos, where):
        t = toks[pos]
        if t.kind == "lparen":
            cmds, pos = self.parse_cmds(toks, pos + 1, where, inner=True)
            if pos >= len(toks) or toks[pos].kind != "rparen":
                raise RenderError(f"{where}: unclosed (")
            pos += 1
            chain = []
            if pos < len(toks) and toks[pos].kind == "field" and not toks[pos].spaced:
                chain = toks[pos].text[1:].split(".")
                pos += 1
            return Paren(Pipeline([], False, cmds), chain), pos
        if t.kind in ("string", "raw"):
            return Literal(unquote_go(t.text, where)), pos + 1
        if t.kind == "number":
            txt = t.text
            if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", txt):
                return Literal(int(txt, 16)), pos + 1
            if re.search(r"[.eE]", txt):
                return Literal(float(txt)), pos + 1
            return Literal(int(txt)), pos + 1
        if t.kind == "field":
            return Field(t.text[1:].split(".")), pos + 1
        if t.kind == "dot":
            return Dot(), pos + 1
        if t.kind == "var":
            name, _, rest = t.text.partition(".")
            return Var(name, rest.split(".") if rest else []), pos + 1
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return Literal(t.text == "true"), pos + 1
            if t.text == "nil":
                return Nil(), pos + 1
            if t.text in KEYWORDS:
                raise RenderError(f"{where}: unexpected keyword {t.text!r}")
            if t.text not in FUNCTIONS:
                raise RenderError(f"{where}: function {t.text!r} not defined (not in the "
                                  "supported subset; see the top of render.py)")
            return Func(t.text), pos + 1
        raise RenderError(f"{where}: unexpected {t.text!r}")


# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------

def _check_arg(fname, i, want, v):
    if want == "any":
        return v
    if want == "str" and isinstance(v, str):
        return v
    if want == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    gowant = {"str": "string", "int": "int"}[want]
    if v is None:
        raise RenderError(f"{fname}: invalid value; expected {gowant} (argument {i + 1} is nil)")
    raise RenderError(f"{fname}: wrong type for value; expected {gowant}; got {go_type(v)} "
                      f"(argument {i + 1})")


def _basic_kind(v):
    if v is None:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def fn_eq(a, *others):
    if not others:
        raise RenderError("eq: missing argument for comparison")
    k1 = _basic_kind(a)
    for b in others:
        k2 = _basic_kind(b)
        if k1 != k2:
            if k1 != "invalid" and k2 != "invalid":
                raise RenderError(f"eq: incompatible types for comparison ({go_type(a)} and "
                                  f"{go_type(b)})")
            continue
        if k1 == "other":
            raise RenderError(f"eq: non-comparable type {go_type(a)}")
        if a == b:
            return True
    return False


def fn_ne(a, b):
    return not fn_eq(a, b)


def _ordered(name, a, b):
    k1, k2 = _basic_kind(a), _basic_kind(b)
    if k1 in ("invalid", "other", "bool") or k2 in ("invalid", "other", "bool"):
        raise RenderError(f"{name}: invalid type for comparison ({go_type(a)}, {go_type(b)})")
    if k1 != k2:
        raise RenderError(f"{name}: incompatible types for comparison ({go_type(a)} and "
                          f"{go_type(b)})")
    return a, b


def fn_printf(fmt, *args):
    out = []
    i = 0
    ai = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise RenderError("printf: format ends with %")
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if verb not in "sdvq":
            raise RenderError(f"printf: verb %{verb} (or flags/width) outside the subset "
                              "(%s %d %v %q %%)")
        if ai >= len(args):
            raise RenderError(f"printf: missing argument for %{verb} in {fmt!r}")
        a = args[ai]
        ai += 1
        if verb == "s":
            if not isinstance(a, str):
                raise RenderError(f"printf: %s of a {go_type(a)} (Go would print "
                                  f"%!s({go_type(a)}=...))")
            out.append(a)
        elif verb == "d":
            if not isinstance(a, int) or isinstance(a, bool):
                raise RenderError(f"printf: %d of a {go_type(a)} (values-file numbers are "
                                  "float64 in Helm: use %v)")
            out.append(str(a))
        elif verb == "q":
            if not isinstance(a, str):
                raise RenderError(f"printf: %q of a {go_type(a)}")
            out.append(go_quote(a))
        else:  # v
            if a is None:
                raise RenderError("printf: %v of nil (Go would print <nil>)")
            out.append(go_print(a, "printf %v argument"))
    if ai != len(args):
        raise RenderError(f"printf: {len(args) - ai} extra argument(s) for {fmt!r}")
    return "".join(out)


def fn_quote(*args):
    return " ".join(go_quote(go_print(a, "quote argument")) for a in args if a is not None)


def fn_default(d, *given):
    if not given or not truthy(given[0]):
        return d
    return given[0]


def fn_trunc(c, s):
    if c < 0 and len(s) + c > 0:
        return s[len(s) + c:]
    if c >= 0 and len(s) > c:
        return s[:c]
    return s


def fn_indent(n, s):
    pad = " " * n
    return pad + s.replace("\n", "\n" + pad)


def fn_required(msg, v):
    if v is None or (isinstance(v, str) and v == ""):
        raise RenderError(msg)
    return v


def fn_fail(msg):
    raise RenderError(msg)


# name: (parameter kinds, variadic kind or None, implementation or None for special forms)
FUNCTIONS = {
    "include": (["str", "any"], None, None),
    "required": (["str", "any"], None, fn_required),
    "fail": (["str"], None, fn_fail),
    "toYaml": (["any"], None, to_yaml),
    "toJson": (["any"], None, to_json),
    "nindent": (["int", "str"], None, lambda n, s: "\n" + fn_indent(n, s)),
    "indent": (["int", "str"], None, fn_indent),
    "quote": ([], "any", fn_quote),
    "default": (["any"], "any", fn_default),
    "printf": (["str"], "any", fn_printf),
    "trunc": (["int", "str"], None, fn_trunc),
    "trimSuffix": (["str", "str"], None, lambda suf, s: s[:-len(suf)] if suf and
                   s.endswith(suf) else s),
    "sha256sum": (["str"], None, lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest()),
    "eq": (["any", "any"], "any", fn_eq),
    "ne": (["any", "any"], None, fn_ne),
    "lt": (["any", "any"], None, lambda a, b: (lambda x, y: x < y)(*_ordered("lt", a, b))),
    "le": (["any", "any"], None, lambda a, b: (lambda x, y: x <= y)(*_ordered("le", a, b))),
    "gt": (["any", "any"], None, lambda a, b: (lambda x, y: x > y)(*_ordered("gt", a, b))),
    "ge": (["any", "any"], None, lambda a, b: (lambda x, y: x >= y)(*_ordered("ge", a, b))),
    "and": (["any"], "any", None),
    "or": (["any"], "any", None),
    "not": (["any"], None, lambda v: not truthy(v)),
}


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------

class Engine:
    MAX_INCLUDE_DEPTH = 100

    def __init__(self, defines):
        self.defines = defines
        self.depth = 0

    def execute(self, nodes, dot):
        out = []
        self.exec_nodes(nodes, dot, [["$", dot]], out)
        return "".join(out)

    def exec_nodes(self, nodes, dot, scope, out):
        for n in nodes:
            if isinstance(n, Text):
                out.append(n.text)
            elif isinstance(n, Action):
                try:
                    v = self.eval_pipeline(n.pipe, dot, scope)
                except RenderError as e:
                    raise _locate(e, n.where)
                if not n.pipe.decl:
                    try:
                        out.append(go_print(v, "the output of an action"))
                    except RenderError as e:
                        raise _locate(e, n.where)
            else:
                self.exec_branch(n, dot, scope, out)

    def exec_branch(self, n, dot, scope, out):
        mark = len(scope)
        try:
            if n.kind == "range":
                v = self.eval_pipeline(Pipeline([], False, n.pipe.cmds), dot, scope)
            else:
                v = self.eval_pipeline(n.pipe, dot, scope)
        except RenderError as e:
            raise _locate(e, n.where)
        try:
            if n.kind == "if":
                if truthy(v):
                    self.exec_nodes(n.body, dot, scope, out)
                elif n.else_body is not None:
                    self.exec_nodes(n.else_body, dot, scope, out)
            elif n.kind == "with":
                if truthy(v):
                    self.exec_nodes(n.body, v, scope, out)
                elif n.else_body is not None:
                    self.exec_nodes(n.else_body, dot, scope, out)
            else:
                if v is None:
                    pairs = []
                elif isinstance(v, list):
                    pairs = list(enumerate(v))
                elif isinstance(v, dict):
                    pairs = [(k, v[k]) for k in sorted(v)]
                else:
                    raise _locate(RenderError(f"range can't iterate over a {go_type(v)}"),
                                  n.where)
                for key, elem in pairs:
                    inner = len(scope)
                    if len(n.pipe.decl) == 1:
                        scope.append([n.pipe.decl[0], elem])
                    elif len(n.pipe.decl) == 2:
                        scope.append([n.pipe.decl[0], key])
                        scope.append([n.pipe.decl[1], elem])
                    self.exec_nodes(n.body, elem, scope, out)
                    del scope[inner:]
                if not pairs and n.else_body is not None:
                    self.exec_nodes(n.else_body, dot, scope, out)
        finally:
            del scope[mark:]

    def eval_pipeline(self, pipe, dot, scope):
        v = NO_VALUE
        for cmd in pipe.cmds:
            v = self.eval_command(cmd, dot, scope, v)
        if pipe.decl:
            name = pipe.decl[0]
            if pipe.is_assign:
                for entry in reversed(scope):
                    if entry[0] == name:
                        entry[1] = v
                        break
                else:
                    raise RenderError(f"undefined variable {name}")
            else:
                scope.append([name, v])
        return v

    def eval_command(self, cmd, dot, scope, final):
        first = cmd[0]
        if isinstance(first, Func):
            return self.call(first.name, cmd[1:], dot, scope, final)
        takes_args = len(cmd) > 1 or final is not NO_VALUE
        if isinstance(first, (Field, Var, Paren)) and takes_args:
            # only a method (.Files.Get) may take arguments; eval_chain_operand refuses the rest
            args = [self.eval_arg(a, dot, scope) for a in cmd[1:]]
            if final is not NO_VALUE:
                args.append(final)
            return self.eval_chain_operand(first, dot, scope, args)
        if len(cmd) > 1 or final is not NO_VALUE:
            raise RenderError("can't give argument to non-function")
        return self.eval_arg(first, dot, scope)

    def eval_arg(self, a, dot, scope):
        if isinstance(a, Literal):
            return a.value
        if isinstance(a, Nil):
            return None
        if isinstance(a, Dot):
            return dot
        if isinstance(a, (Field, Var, Paren)):
            return self.eval_chain_operand(a, dot, scope, None)
        if isinstance(a, Func):
            raise RenderError(f"function {a.name!r} used as an argument without parentheses")
        raise RenderError("internal: unknown operand")

    def eval_chain_operand(self, a, dot, scope, args):
        if isinstance(a, Field):
            recv, path, chain = dot, "", a.chain
        elif isinstance(a, Var):
            for entry in reversed(scope):
                if entry[0] == a.name:
                    recv = entry[1]
                    break
            else:
                raise RenderError(f"undefined variable: {a.name}")
            path, chain = a.name, a.chain
        else:
            recv, path, chain = self.eval_pipeline(a.pipe, dot, scope), "(...)", a.chain
        for idx, name in enumerate(chain):
            last = idx == len(chain) - 1
            if isinstance(recv, FilesObject):
                if name != "Get" or not last:
                    raise RenderError(f"{path}.{name}: only .Files.Get is supported")
                if args is None or len(args) != 1 or not isinstance(args[0], str):
                    raise RenderError(".Files.Get takes one string argument")
                return recv.get(args[0])
            if recv is None:
                raise RenderError(f"nil pointer evaluating interface {{}}.{name} (at {path})")
            if not isinstance(recv, dict):
                raise RenderError(f"can't evaluate field {name} in type {go_type(recv)} "
                                  f"(at {path})")
            if name not in recv:
                raise RenderError(f"{path}.{name}: no such key (render.py refuses what Helm "
                                  "would render empty; declare it in values.yaml)")
            recv = recv[name]
            path = f"{path}.{name}"
        if args:
            raise RenderError(f"{path} is not a function and takes no arguments")
        if isinstance(recv, FilesObject) and chain:
            raise RenderError(f"{path}: use .Files.Get")
        return recv

    def call(self, name, arg_nodes, dot, scope, final):
        params, variadic, impl = FUNCTIONS[name]
        if name in ("and", "or"):
            nodes = list(arg_nodes)
            if not nodes and final is NO_VALUE:
                raise RenderError(f"{name}: wrong number of args: want at least 1 got 0")
            v = None
            total = len(nodes) + (final is not NO_VALUE)
            for i in range(total):
                v = final if i == len(nodes) else self.eval_arg(nodes[i], dot, scope)
                if (name == "and") != truthy(v):
                    return v
            return v
        args = [self.eval_arg(a, dot, scope) for a in arg_nodes]
        if final is not NO_VALUE:
            args.append(final)
        if len(args) < len(params) or (variadic is None and len(args) != len(params)):
            raise RenderError(f"wrong number of args for {name}: want {len(params)}"
                              f"{'+' if variadic else ''} got {len(args)}")
        args = [_check_arg(name, i, params[i] if i < len(params) else variadic, v)
                for i, v in enumerate(args)]
        if name == "include":
            return self.include(args[0], args[1])
        return impl(*args)

    def include(self, tname, data):
        if tname not in self.defines:
            raise RenderError(f"include: no template {tname!r} is defined")
        if self.depth >= self.MAX_INCLUDE_DEPTH:
            raise RenderError(f"include: recursion too deep at {tname!r}")
        body, where = self.defines[tname]
        self.depth += 1
        try:
            out = []
            self.exec_nodes(body, data, [["$", data]], out)
            return "".join(out)
        except RenderError as e:
            raise _locate(e, f"in {tname!r} ({where})")
        finally:
            self.depth -= 1


def _locate(err, where):
    msg = str(err)
    if msg.startswith("@"):
        return err
    return RenderError(f"@{where}: {msg}")


# --------------------------------------------------------------------------------------------
# Charts: values, templates, rendering
# --------------------------------------------------------------------------------------------

def helm_values(v):
    """What Helm's values loading does to YAML data: JSON round trip, so every number is a
    float64 and every key a string. Dates and other YAML-only types are refused."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [helm_values(x) for x in v]
    if isinstance(v, dict):
        return {str(k): helm_values(x) for k, x in v.items()}
    raise RenderError(f"values: unsupported YAML value {v!r} ({type(v).__name__}); quote it")


def coalesce(base, override):
    """Helm's merge of a user values file onto the defaults (null deletes a default)."""
    out = dict(base)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = coalesce(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml_file(path):
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=UniqueKeyLoader)
    return {} if data is None else data


def load_chart(chart_dir, value_files, release_name, namespace):
    meta = load_yaml_file(os.path.join(chart_dir, "Chart.yaml"))
    for key in ("apiVersion", "name", "version", "appVersion"):
        if not isinstance(meta.get(key), str):
            raise RenderError(f"Chart.yaml: {key} must be a string")
    values = load_yaml_file(os.path.join(chart_dir, "values.yaml"))
    if not isinstance(values, dict):
        raise RenderError("values.yaml must be a mapping")
    for vf in value_files:
        override = load_yaml_file(vf)
        if not isinstance(override, dict):
            raise RenderError(f"{vf}: must be a mapping")
        values = coalesce(values, override)
    root = {
        "Values": helm_values(values),
        "Release": {"Name": release_name, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"],
                  "AppVersion": meta["appVersion"]},
        "Files": FilesObject(chart_dir),
    }
    tdir = os.path.join(chart_dir, "templates")
    defines = {}
    parsed = {}
    for dirpath, _, files in os.walk(tdir):
        for fn in sorted(files):
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, chart_dir)
            if not re.search(r"\.(ya?ml|tpl|txt)$", fn):
                raise RenderError(f"{rel}: unexpected file in templates/")
            with open(full, encoding="utf-8") as fh:
                src = fh.read()
            nodes = Parser(lex_template(src, rel), rel, defines).parse()
            parsed[rel] = nodes
    return meta, root, defines, parsed


SPLIT_RE = re.compile(r"(?:^|\s*\n)---\s*")


def render_chart(chart_dir, value_files, release_name="gitrev", namespace="default",
                 notes=False):
    meta, root, defines, parsed = load_chart(chart_dir, value_files, release_name, namespace)
    engine = Engine(defines)
    docs = []
    notes_text = None
    for rel in sorted(parsed):
        base = os.path.basename(rel)
        if base.startswith("_"):
            continue
        try:
            text = engine.execute(parsed[rel], root)
        except RenderError as e:
            msg = str(e)
            raise RenderError(f"{rel}: {msg[1:] if msg.startswith('@') else msg}")
        if base == "NOTES.txt":
            notes_text = text
            continue
        for doc in SPLIT_RE.split(text):
            if doc.strip():
                docs.append((f"{meta['name']}/{rel}", doc.strip() + "\n"))
    if notes:
        return notes_text or ""
    return "".join(f"---\n# Source: {src}\n{doc}" for src, doc in docs)


# --------------------------------------------------------------------------------------------
# Checks of a rendered stream
# --------------------------------------------------------------------------------------------

class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                _construct_mapping)

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PROM_DURATION = re.compile(r"^((\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?|0)$")
ALERT_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SCI_NOTATION = re.compile(r"^[+-]?\d+(\.\d+)?e[+-]\d+$")

# kinds without a bundled schema, checked by hand below
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}

# The default of GITREV_CLICK_DRAIN_MS (src/config.rs): the click queue drain after the HTTP grace.
CLICK_DRAIN_DEFAULT_MS = 15000

# Metrics of the prometheus crate's process collector, and Prometheus' own `up`.
PROCESS_METRICS = {"process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                   "process_start_time_seconds", "process_threads", "up"}

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "absent", "absent_over_time", "clamp_min", "clamp_max", "vector",
    "scalar", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "time",
    "label_replace", "deriv", "predict_linear", "abs", "ceil", "floor", "round", "sort",
    "sort_desc", "changes", "resets", "inf", "nan", "Inf", "NaN", "e",
}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        self.items.append(f"{where}: {msg}")


def split_stream(text):
    """Split a multi-document stream into (source, document) pairs."""
    out = []
    for chunk in re.split(r"(?m)^---[ \t]*$", text):
        if not chunk.strip():
            continue
        m = re.search(r"(?m)^# Source: (.*)$", chunk)
        out.append((m.group(1).strip() if m else "<stream>", chunk))
    return out


def promql_metrics(expr):
    """Metric names used by a PromQL expression (a careful approximation, not a parser)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group()
        after = s[m.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        if re.fullmatch(r"\d+(\.\d+)?([eE][+-]?\d+)?", word):
            continue
        prev = s[:m.start()]
        if re.search(r"\d$", prev):  # part of a number such as 1e3 or a duration
            continue
        names.add(word)
    return names


def promql_balanced(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    if s.count('"') % 2:
        return False
    stack = []
    for c in s:
        if c in "([{":
            stack.append(c)
        elif c in ")]}":
            if not stack or "([{"[")]}".index(c)] != stack.pop():
                return False
    return not stack


def known_metrics_from(path):
    with open(path, encoding="utf-8") as fh:
        src = fh.read()
    names = set(re.findall(r'"(gitrev_[a-z0-9_]+)"', src))
    return names | PROCESS_METRICS


def metric_known(name, known):
    if name in known:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return True
    return False


def settings_from(path):
    with open(path, encoding="utf-8") as fh:
        return set(re.findall(r'env\s*=\s*"(GITREV_[A-Z0-9_]+)"', fh.read()))


def runbook_anchors(path):
    anchors = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"^#+\s+(.*?)\s*$", line)
            if m:
                anchors.add(re.sub(r"[^a-z0-9_-]", "", m.group(1).lower().replace(" ", "-")))
    return anchors


def hook_info(doc):
    ann = (doc.get("metadata") or {}).get("annotations") or {}
    hooks = ann.get("helm.sh/hook")
    if not hooks:
        return None
    weight = int(str(ann.get("helm.sh/hook-weight", "0")))
    policy = ann.get("helm.sh/hook-delete-policy", "")
    return {"hooks": {h.strip() for h in hooks.split(",")}, "weight": weight,
            "policy": {p.strip() for p in policy.split(",") if p.strip()}}


def pod_spec_of(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}, \
            ((spec.get("template") or {}).get("metadata") or {})
    return None, None


def check_labels(where, labels, probs, what="label"):
    if labels is None:
        return
    if not isinstance(labels, dict):
        probs.add(where, f"{what}s must be a mapping")
        return
    for k, v in labels.items():
        name = str(k).split("/")[-1]
        if len(name) > 63 or not LABEL_NAME.match(name):
            probs.add(where, f"{what} key {k!r} is not a valid label name")
        if what == "label":
            if not isinstance(v, str):
                probs.add(where, f"label {k}: value must be a string, got {v!r}")
            elif len(v) > 63 or not LABEL_VALUE.match(v):
                probs.add(where, f"label {k}: value {v!r} is not a valid label value")
        elif not isinstance(v, str):
            probs.add(where, f"annotation {k}: value must be a string, got {v!r}")


def check_servicemonitor(where, doc, probs):
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        probs.add(where, "ServiceMonitor: spec is required")
        return
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        probs.add(where, "ServiceMonitor: spec.selector with matchLabels is required")
    eps = spec.get("endpoints")
    if not isinstance(eps, list) or not eps:
        probs.add(where, "ServiceMonitor: spec.endpoints must be a non-empty list")
        return
    allowed = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
               "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
               "params", "tlsConfig", "bearerTokenSecret", "basicAuth", "followRedirects",
               "enableHttp2", "proxyUrl", "oauth2", "authorization", "filterRunning",
               "trackTimestampsStaleness"}
    for i, ep in enumerate(eps):
        if not isinstance(ep, dict):
            probs.add(where, f"ServiceMonitor: endpoints[{i}] must be a mapping")
            continue
        for k in ep:
            if k not in allowed:
                probs.add(where, f"ServiceMonitor: endpoints[{i}].{k} is not a known field")
        if not ep.get("port") and not ep.get("targetPort"):
            probs.add(where, f"ServiceMonitor: endpoints[{i}] needs port or targetPort")
        for k in ("interval", "scrapeTimeout"):
            if k in ep and not (isinstance(ep[k], str) and PROM_DURATION.match(ep[k])):
                probs.add(where, f"ServiceMonitor: endpoints[{i}].{k} {ep[k]!r} is not a "
                          "duration")
        if "path" in ep and not str(ep["path"]).startswith("/"):
            probs.add(where, f"ServiceMonitor: endpoints[{i}].path must start with /")
    for k in spec:
        if k not in {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                     "podTargetLabels", "sampleLimit", "attachMetadata", "labelLimit"}:
            probs.add(where, f"ServiceMonitor: spec.{k} is not a known field")


def check_prometheusrule(where, doc, probs, known_metrics, anchors):
    spec = doc.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("groups"), list) \
            or not spec["groups"]:
        probs.add(where, "PrometheusRule: spec.groups must be a non-empty list")
        return
    for k in spec:
        if k != "groups":
            probs.add(where, f"PrometheusRule: spec.{k} is not a known field")
    names = set()
    for gi, g in enumerate(spec["groups"]):
        gw = f"{where}: groups[{gi}]"
        if not isinstance(g, dict) or not isinstance(g.get("name"), str) or not g["name"]:
            probs.add(gw, "name is required")
            continue
        if g["name"] in names:
            probs.add(gw, f"duplicate group name {g['name']!r}")
        names.add(g["name"])
        for k in g:
            if k not in {"name", "rules", "interval", "limit", "partial_response_strategy"}:
                probs.add(gw, f"{k} is not a known field")
        rules = g.get("rules")
        if not isinstance(rules, list) or not rules:
            probs.add(gw, "rules must be a non-empty list")
            continue
        for ri, r in enumerate(rules):
            rw = f"{gw}.rules[{ri}]"
            if not isinstance(r, dict):
                probs.add(rw, "must be a mapping")
                continue
            for k in r:
                if k not in {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                             "annotations"}:
                    probs.add(rw, f"{k} is not a known field")
            if ("alert" in r) == ("record" in r):
                probs.add(rw, "exactly one of alert and record is required")
            name = r.get("alert") or r.get("record")
            if "alert" in r and not (isinstance(name, str) and ALERT_NAME.match(name)):
                probs.add(rw, f"alert name {name!r} is invalid")
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                probs.add(rw, "expr must be a non-empty string")
                continue
            if not promql_balanced(expr):
                probs.add(rw, f"expr has unbalanced brackets or quotes: {expr}")
            if known_metrics is not None:
                for metric in sorted(promql_metrics(expr)):
                    if not metric_known(metric, known_metrics):
                        probs.add(rw, f"expr uses metric {metric!r}, which the service does "
                                  "not export")
            for k in ("for", "keep_firing_for"):
                if k in r and not (isinstance(r[k], str) and PROM_DURATION.match(r[k])):
                    probs.add(rw, f"{k} {r[k]!r} is not a duration")
            for k in ("labels", "annotations"):
                if k in r:
                    if not isinstance(r[k], dict):
                        probs.add(rw, f"{k} must be a mapping")
                        continue
                    for lk, lv in r[k].items():
                        if not isinstance(lv, str):
                            probs.add(rw, f"{k}.{lk} must be a string, got {lv!r}")
            if "alert" in r:
                ann = r.get("annotations") or {}
                url = ann.get("runbook_url")
                want = f"docs/runbooks.md#{name.lower()}"
                if not isinstance(url, str) or not url.endswith(want):
                    probs.add(rw, f"annotations.runbook_url must end with {want}, got {url!r}")
                elif anchors is not None and name.lower() not in anchors:
                    probs.add(rw, f"runbook anchor #{name.lower()} is missing from the "
                              "runbooks file")
                for k in ("summary", "description"):
                    if not ann.get(k):
                        probs.add(rw, f"annotations.{k} is required")
                if not (r.get("labels") or {}).get("severity"):
                    probs.add(rw, "labels.severity is required")


def selector_matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_stream(text, kube_versions, externals=(), expect_kinds=(), settings=None,
                 known_metrics=None, anchors=None, kube_validate=True, forbid_kinds=()):
    probs = Problems()
    if kube_validate:
        import kubernetes_validate  # noqa: imported late so `template` works without it
    docs = []
    for source, chunk in split_stream(text):
        try:
            doc = yaml.load(chunk, Loader=UniqueKeyLoader)
        except yaml.YAMLError as e:
            probs.add(source, f"not valid YAML: {e}")
            continue
        if doc is None:
            continue
        if not isinstance(doc, dict):
            probs.add(source, "document is not a mapping")
            continue
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(doc.get("apiVersion"), str) or not doc["apiVersion"]:
            probs.add(source, "apiVersion is missing")
        if not isinstance(doc.get("kind"), str) or not doc["kind"]:
            probs.add(source, "kind is missing")
        if not isinstance(name, str) or not name:
            probs.add(source, "metadata.name is missing")
            continue
        where = f"{source} {doc.get('kind')}/{name}"
        docs.append((where, doc))
        if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            probs.add(where, "metadata.name is not a DNS-1123 subdomain")
        if doc.get("kind") == "Service" and (len(name) > 63 or not DNS1035_LABEL.match(name)):
            probs.add(where, "a Service name must be a DNS-1035 label (<= 63 characters)")
        if doc.get("kind") in ("Deployment", "Job") and len(name) > 63:
            probs.add(where, "name longer than 63 characters")
        check_labels(where, meta.get("labels"), probs)
        check_labels(where, meta.get("annotations"), probs, "annotation")
        _, tmeta = pod_spec_of(doc)
        if tmeta:
            check_labels(where + " (pod template)", tmeta.get("labels"), probs)
            check_labels(where + " (pod template)", tmeta.get("annotations"), probs,
                         "annotation")
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_KINDS:
            if key[1] == "ServiceMonitor":
                check_servicemonitor(where, doc, probs)
            else:
                check_prometheusrule(where, doc, probs, known_metrics, anchors)
        elif kube_validate:
            for kv in kube_versions:
                try:
                    kubernetes_validate.validate(doc, kv, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    probs.add(where, f"schema (Kubernetes {e.version}, strict): {path}: "
                              f"{e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    probs.add(where, f"no schema: {e.message} (not a built-in kind, and not one "
                              "of the CRDs render.py checks by hand)")
                except kubernetes_validate.utils.VersionNotSupportedError as e:
                    raise RenderError(f"kubernetes-validate has no schemas for {e.version}")
    if not docs and not probs.items:
        probs.add("<stream>", "no documents")
    seen = {}
    for where, doc in docs:
        k = (doc["kind"], doc["metadata"]["name"])
        if k in seen:
            probs.add(where, f"duplicate {k[0]}/{k[1]} (also {seen[k]})")
        seen[k] = where
    kinds = {doc["kind"] for _, doc in docs}
    for k in expect_kinds:
        if k not in kinds:
            probs.add("<stream>", f"expected a {k}, found none")
    for k in forbid_kinds:
        if k in kinds:
            probs.add("<stream>", f"expected no {k}, found one")
    check_relations(docs, probs, set(externals), settings)
    return probs.items, docs


def check_relations(docs, probs, externals, settings):
    by_kind = {}
    for where, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = (where, doc)
    cms = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    sas = by_kind.get("ServiceAccount", {})
    deployments = by_kind.get("Deployment", {})

    # ConfigMaps: every value a string; gitrev settings known and not mangled numbers
    for name, (where, cm) in cms.items():
        for k, v in (cm.get("data") or {}).items():
            if not isinstance(v, str):
                probs.add(where, f"data.{k} must be a string, got {v!r}")
            elif k.startswith("GITREV_"):
                if SCI_NOTATION.match(v):
                    probs.add(where, f"data.{k} is {v!r}: a number printed in Go's scientific "
                              "notation; quote it in the values file")
                if settings is not None and k not in settings and k != "GITREV_LISTEN":
                    probs.add(where, f"data.{k}: gitrev has no such setting")
        labels = (cm.get("metadata") or {}).get("labels") or {}
        if labels.get("grafana_dashboard") is not None:
            check_dashboard(where, cm, probs)
        for k, v in (cm.get("data") or {}).items():
            if k.endswith(".py") and isinstance(v, str):
                try:
                    compile(v, k, "exec")
                except SyntaxError as e:
                    probs.add(where, f"data.{k} does not compile: {e}")

    # Workloads: references resolve, and hooks only use what exists when they run
    for kind in ("Deployment", "Job"):
        for name, (where, doc) in by_kind.get(kind, {}).items():
            spec, tmeta = pod_spec_of(doc)
            hook = hook_info(doc)
            refs = []  # (kind, name, key or None, optional)
            sa = spec.get("serviceAccountName")
            if sa and sa != "default":
                refs.append(("ServiceAccount", sa, None, False))
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                cw = f"{where} container {c.get('name')}"
                for ef in c.get("envFrom") or []:
                    if "configMapRef" in ef:
                        refs.append(("ConfigMap", ef["configMapRef"]["name"], None,
                                     ef["configMapRef"].get("optional", False)))
                    if "secretRef" in ef:
                        refs.append(("Secret", ef["secretRef"]["name"], None,
                                     ef["secretRef"].get("optional", False)))
                names = [e.get("name") for e in c.get("env") or []]
                for dup in {n for n in names if names.count(n) > 1}:
                    probs.add(cw, f"env {dup} is set twice")
                for e in c.get("env") or []:
                    vf = e.get("valueFrom") or {}
                    if "secretKeyRef" in vf:
                        r = vf["secretKeyRef"]
                        refs.append(("Secret", r["name"], r["key"], r.get("optional", False)))
                    if "configMapKeyRef" in vf:
                        r = vf["configMapKeyRef"]
                        refs.append(("ConfigMap", r["name"], r["key"], r.get("optional", False)))
                img = c.get("image", "")
                if ":" not in img.rsplit("/", 1)[-1] or img.endswith(":"):
                    probs.add(cw, f"image {img!r} has no tag")
                if not (c.get("resources") or {}).get("requests"):
                    probs.add(cw, "no resource requests")
            for v in spec.get("volumes") or []:
                if "configMap" in v:
                    refs.append(("ConfigMap", v["configMap"]["name"], None,
                                 v["configMap"].get("optional", False)))
                if "secret" in v:
                    refs.append(("Secret", v["secret"]["secretName"], None,
                                 v["secret"].get("optional", False)))
            for rkind, rname, rkey, optional in refs:
                pool = {"ConfigMap": cms, "Secret": secrets, "ServiceAccount": sas}[rkind]
                if rname not in pool:
                    if f"{rkind}/{rname}" in externals:
                        continue
                    if not optional:
                        probs.add(where, f"references {rkind} {rname!r}, which the chart does "
                                  "not create (and it is not declared external)")
                    continue
                twhere, target = pool[rname]
                if rkey is not None:
                    keys = set((target.get("data") or {}).keys()) | \
                        set((target.get("stringData") or {}).keys())
                    if rkey not in keys:
                        probs.add(where, f"references key {rkey!r} of {rkind} {rname!r}, "
                                  "which it does not have")
                if hook and hook["hooks"] & {"pre-install", "pre-upgrade"}:
                    thook = hook_info(target)
                    if thook is None:
                        probs.add(where, f"is a {','.join(sorted(hook['hooks']))} hook but "
                                  f"uses {rkind} {rname!r}, an ordinary release resource that "
                                  "does not exist yet when a pre-install hook runs")
                    else:
                        if not hook["hooks"] <= thook["hooks"]:
                            probs.add(where, f"hook phases {sorted(hook['hooks'])} are not "
                                      f"all covered by {rkind} {rname!r} "
                                      f"({sorted(thook['hooks'])})")
                        if thook["weight"] >= hook["weight"]:
                            probs.add(where, f"{rkind} {rname!r} has hook-weight "
                                      f"{thook['weight']}, not lower than this hook's "
                                      f"{hook['weight']}")
                        if "before-hook-creation" not in thook["policy"]:
                            probs.add(twhere, "hook resource without before-hook-creation "
                                      "delete policy: the next upgrade fails with 'already "
                                      "exists'")

    # Services select pods, and their target ports exist
    services = by_kind.get("Service", {})
    for name, (where, svc) in services.items():
        sel = (svc.get("spec") or {}).get("selector") or {}
        targets = [(dw, d) for dw, d in deployments.values()
                   if selector_matches(sel, (pod_spec_of(d)[1] or {}).get("labels") or {})]
        if not targets:
            probs.add(where, f"selector {sel} matches no Deployment's pods")
            continue
        for p in (svc.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            for dw, d in targets:
                ports = [cp for c in pod_spec_of(d)[0].get("containers") or []
                         for cp in c.get("ports") or []]
                if isinstance(tp, str) and tp not in {cp.get("name") for cp in ports}:
                    probs.add(where, f"targetPort {tp!r} is not a named port of {dw}")
                if isinstance(tp, int) and tp not in {cp.get("containerPort") for cp in ports}:
                    probs.add(where, f"targetPort {tp} is not a container port of {dw}")
        if len(targets) > 1:
            probs.add(where, "selector matches more than one Deployment's pods")

    # HPA targets a Deployment that leaves replicas to it; PDB leaves room for evictions
    hpa_min = {}
    for name, (where, hpa) in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") != "Deployment" or ref.get("name") not in deployments:
            probs.add(where, f"scaleTargetRef {ref} is not a Deployment of this chart")
            continue
        dwhere, dep = deployments[ref["name"]]
        if "replicas" in (dep.get("spec") or {}):
            probs.add(dwhere, "sets spec.replicas although an HPA scales it (every upgrade "
                      "would reset the replica count)")
        spec = hpa["spec"]
        if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
            probs.add(where, "minReplicas is above maxReplicas")
        hpa_min[ref["name"]] = spec.get("minReplicas", 1)
    for name, (where, pdb) in by_kind.get("PodDisruptionBudget", {}).items():
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        targets = [(dn, d) for dn, (dw, d) in deployments.items()
                   if selector_matches(sel, (pod_spec_of(d)[1] or {}).get("labels") or {})]
        if not targets:
            probs.add(where, f"selector {sel} matches no Deployment's pods")
            continue
        min_av = (pdb.get("spec") or {}).get("minAvailable")
        for dn, d in targets:
            replicas = hpa_min.get(dn, (d.get("spec") or {}).get("replicas", 1))
            if isinstance(min_av, int) and min_av >= replicas:
                probs.add(where, f"minAvailable {min_av} >= the {replicas} replica(s) of {dn}: "
                          "no pod could ever be evicted, node drains would hang")

    # ServiceMonitor selects a Service with the named port
    for name, (where, sm) in by_kind.get("ServiceMonitor", {}).items():
        sel = ((sm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        matched = [s for _, s in services.values()
                   if selector_matches(sel, (s.get("metadata") or {}).get("labels") or {})]
        if not matched:
            probs.add(where, f"selector {sel} matches no Service of this chart")
        for ep in (sm.get("spec") or {}).get("endpoints") or []:
            if "port" in ep and not any(ep["port"] in {p.get("name") for p in
                                                       (s.get("spec") or {}).get("ports") or []}
                                        for s in matched):
                probs.add(where, f"endpoint port {ep['port']!r} is not a named Service port")

    # gitrev itself: the hardening and shutdown budget the brief asks for
    for name, (where, dep) in deployments.items():
        spec, tmeta = pod_spec_of(dep)
        labels = (tmeta or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/component") != "server":
            continue
        check_gitrev_pod(where, spec, tmeta, cms, probs, deployment=True)
    for name, (where, job) in by_kind.get("Job", {}).items():
        spec, tmeta = pod_spec_of(job)
        check_gitrev_pod(where, spec, tmeta, cms, probs, deployment=False)


def check_gitrev_pod(where, spec, tmeta, cms, probs, deployment):
    containers = spec.get("containers") or []
    if len(containers) != 1:
        probs.add(where, "expected exactly one container")
        return
    c = containers[0]
    psc = spec.get("securityContext") or {}
    sc = c.get("securityContext") or {}
    want = {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False}
    for k, v in want.items():
        if sc.get(k, psc.get(k) if k in ("runAsNonRoot", "runAsUser") else None) != v:
            probs.add(where, f"securityContext.{k} should be {v}")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        probs.add(where, "securityContext.capabilities.drop should include ALL")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        probs.add(where, "seccompProfile should be RuntimeDefault")
    mounts = {m.get("mountPath") for m in c.get("volumeMounts") or []}
    if "/tmp" not in mounts:
        probs.add(where, "no writable /tmp (read-only root filesystem)")
    env = {e["name"]: e for e in c.get("env") or []}
    if "secretKeyRef" not in (env.get("DATABASE_URL", {}).get("valueFrom") or {}):
        probs.add(where, "DATABASE_URL must come from a secretKeyRef")
    if not deployment:
        if c.get("args") != ["migrate"]:
            probs.add(where, "the migration Job must run `gitrev migrate`")
        return
    if c.get("args") != ["serve"]:
        probs.add(where, "args should be [serve]")
    probes = {k: c.get(k) or {} for k in ("livenessProbe", "readinessProbe", "startupProbe")}
    for k, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"),
                    ("startupProbe", "/health")):
        if (probes[k].get("httpGet") or {}).get("path") != path:
            probs.add(where, f"{k} should GET {path}")
    ann = (tmeta or {}).get("annotations") or {}
    if not re.fullmatch(r"[0-9a-f]{64}", str(ann.get("checksum/config", ""))):
        probs.add(where, "pod template lacks the checksum/config annotation")
    cm_names = [ef["configMapRef"]["name"] for ef in c.get("envFrom") or []
                if "configMapRef" in ef]
    data = {}
    for n in cm_names:
        if n in cms:
            data.update(cms[n][1].get("data") or {})
    if data.get("GITREV_LISTEN", "").rsplit(":", 1)[0] != "0.0.0.0":
        probs.add(where, "GITREV_LISTEN must listen on 0.0.0.0")
    ports = {p.get("containerPort") for p in c.get("ports") or []}
    listen_port = data.get("GITREV_LISTEN", ":0").rsplit(":", 1)[-1]
    if not listen_port.isdigit() or int(listen_port) not in ports:
        probs.add(where, f"GITREV_LISTEN port {listen_port} is not a container port")
    for k, v in (("GITREV_ENV", "production"), ("GITREV_LOG_FORMAT", "json")):
        if data.get(k) != v:
            probs.add(where, f"{k} should be {v!r}, is {data.get(k)!r}")
    try:
        grace_ms = int(data.get("GITREV_SHUTDOWN_GRACE_MS", "10000"))
    except ValueError:
        probs.add(where, "GITREV_SHUTDOWN_GRACE_MS is not an integer")
        return
    pre_stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}) \
        .get("seconds", 0)
    try:
        drain_s = int(data.get("GITREV_CLICK_DRAIN_MS", str(CLICK_DRAIN_DEFAULT_MS))) / 1000
    except ValueError:
        probs.add(where, "GITREV_CLICK_DRAIN_MS is not an integer")
        return
    budget = pre_stop + grace_ms / 1000 + drain_s
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if tgps <= budget:
        probs.add(where, f"terminationGracePeriodSeconds {tgps} must exceed preStop sleep "
                  f"{pre_stop}s + GITREV_SHUTDOWN_GRACE_MS {grace_ms / 1000:g}s + click drain "
                  f"{drain_s:g}s = {budget:g}s")


def check_dashboard(where, cm, probs):
    data = cm.get("data") or {}
    jsons = [k for k in data if k.endswith(".json")]
    if not jsons:
        probs.add(where, "dashboard ConfigMap has no .json entry")
    for k in jsons:
        try:
            dash = json.loads(data[k])
        except ValueError as e:
            probs.add(where, f"data.{k} is not valid JSON: {e}")
            continue
        panels = dash.get("panels") or []
        if not panels or not dash.get("title") or not dash.get("uid"):
            probs.add(where, f"data.{k}: a dashboard needs title, uid and panels")
        exprs = [t.get("expr", "") for p in panels for t in p.get("targets") or []]
        text = "\n".join(exprs)
        for metric in ("gitrev_http_requests_total", "gitrev_http_request_duration_seconds_bucket",
                       "gitrev_db_pool_connections", "gitrev_db_pool_idle_connections",
                       "gitrev_click_queue_depth", "process_cpu_seconds_total",
                       "process_resident_memory_bytes"):
            if metric not in text:
                probs.add(where, f"data.{k}: no panel queries {metric}")
        if 'status=~"5.."' not in text:
            probs.add(where, f"data.{k}: no 5xx error panel")
        for q in ("0.5", "0.95", "0.99"):
            if f"histogram_quantile({q}," not in text:
                probs.add(where, f"data.{k}: no p{q[2:]} latency query")
        for e in exprs:
            if not promql_balanced(e):
                probs.add(where, f"data.{k}: unbalanced query {e}")


# --------------------------------------------------------------------------------------------
# values.yaml documentation, and comparison with helm's output
# --------------------------------------------------------------------------------------------

def values_doc_paths(values_path):
    """(documented, undocumented): dotted key paths of values.yaml. A leaf key (scalar, list or
    empty map) is documented when it, or a map above it, has a comment line right above it."""
    with open(values_path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    data = load_yaml_file(values_path)
    stack = []  # (indent, key, commented)
    documented, undocumented = [], []
    list_indent = None
    prev = ""
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if not stripped or stripped.startswith("#"):
            prev = stripped if stripped else prev
            continue
        if list_indent is not None and (indent > list_indent or
                                        (indent == list_indent and stripped.startswith("- "))):
            prev = stripped
            continue
        list_indent = None
        m = re.match(r"^([A-Za-z0-9_.\-/]+|\"[^\"]+\"):(\s|$)", stripped)
        if stripped.startswith("- ") or not m:
            if stripped.startswith("- "):
                list_indent = indent
            prev = stripped
            continue
        key = m.group(1).strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        commented = prev.startswith("#")
        stack.append((indent, key, commented))
        path = [k for _, k, _ in stack]
        node = data
        for k in path:
            node = node.get(k) if isinstance(node, dict) else None
        if commented:
            documented.append(".".join(path))
        if not (isinstance(node, dict) and node):
            if not any(c for _, _, c in stack):
                undocumented.append(".".join(path))
            nxt = line.split(":", 1)[1].strip()
            if nxt == "" and isinstance(node, list):
                list_indent = indent
        prev = stripped
    return documented, undocumented


def doc_check(chart_dir):
    problems = []
    documented, undocumented = values_doc_paths(os.path.join(chart_dir, "values.yaml"))
    for p in undocumented:
        problems.append(f"values.yaml: {p} has no comment (on it or on a map above it)")
    readme_path = os.path.join(chart_dir, "README.md")
    with open(readme_path, encoding="utf-8") as fh:
        readme = fh.read()
    for p in documented:
        if f"`{p}`" not in readme:
            problems.append(f"README.md: the values table lacks `{p}`")
    for p in re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, re.M):
        if p not in documented:
            problems.append(f"README.md: `{p}` is in the values table but not a documented key "
                            "of values.yaml")
    return problems


def compare_streams(a_text, b_text):
    """Semantic difference between two rendered streams (e.g. helm's and ours)."""
    def index(text):
        out = {}
        for _, chunk in split_stream(text):
            doc = yaml.load(chunk, Loader=UniqueKeyLoader)
            if isinstance(doc, dict):
                out[(doc.get("kind"), (doc.get("metadata") or {}).get("name"))] = doc
        return out

    def first_diff(a, b, path="$"):
        if type(a) is not type(b):
            return f"{path}: {a!r} != {b!r}"
        if isinstance(a, dict):
            for k in sorted(set(a) | set(b), key=str):
                if k not in a or k not in b:
                    return f"{path}.{k}: only in {'first' if k in a else 'second'}"
                d = first_diff(a[k], b[k], f"{path}.{k}")
                if d:
                    return d
            return None
        if isinstance(a, list):
            if len(a) != len(b):
                return f"{path}: {len(a)} items != {len(b)} items"
            for i, (x, y) in enumerate(zip(a, b)):
                d = first_diff(x, y, f"{path}[{i}]")
                if d:
                    return d
            return None
        return None if a == b else f"{path}: {a!r} != {b!r}"

    a, b = index(a_text), index(b_text)
    diffs = []
    for k in sorted(set(a) | set(b), key=str):
        if k not in a or k not in b:
            diffs.append(f"{k[0]}/{k[1]}: only in the {'first' if k in a else 'second'} stream")
            continue
        d = first_diff(a[k], b[k])
        if d:
            diffs.append(f"{k[0]}/{k[1]}: {d}")
    return diffs


# --------------------------------------------------------------------------------------------
# Self-test of the renderer
# --------------------------------------------------------------------------------------------

SELFTEST = [
    # (template, values, expected output, or "!error substring")
    ("a {{- ` b ` -}} c", {}, "a b c"),
    ("a  {{- 1 }}  {{ 2 -}}  \n b", {}, "a1  2b"),
    ("{{/* x */}}y{{- /* don't */ -}} z", {}, "yz"),
    ("{{ .Values.n }}|{{ .Values.big }}|{{ .Values.f }}|{{ .Values.tiny }}",
     {"n": 16, "big": 1000000, "f": 0.05, "tiny": 0.00001}, "16|1e+06|0.05|1e-05"),
    ("{{ .Values.x | quote }} {{ quote .Values.b }} {{ quote nil }}|",
     {"x": 123456, "b": True}, '"123456" "true" |'),
    ("{{ .Values.big | quote }}", {"big": 1234567}, '"1.234567e+06"'),
    ("{{ if eq .Values.n 1 }}x{{ end }}", {"n": 1}, "!incompatible types"),
    ("{{ if eq .Values.n 1.0 }}x{{ end }}", {"n": 1}, "x"),
    ("{{ if gt .Values.n 2.5 }}big{{ else if gt .Values.n 1.5 }}mid{{ else }}small{{ end }}",
     {"n": 2}, "mid"),
    ("{{ trunc .Values.n \"abc\" }}", {"n": 2}, "!wrong type for value; expected int"),
    ("{{ trunc 2 \"abc\" }}{{ \"abc-\" | trimSuffix \"-\" }}", {}, "ababc"),
    ("{{ .Values.missing }}", {}, "!no such key"),
    ("{{ .Values.a.b }}", {"a": None}, "!nil pointer"),
    ("{{ nosuch 1 }}", {}, "!function 'nosuch' not defined"),
    ("{{ template \"x\" }}", {}, "!outside the supported subset"),
    ("{{ range $i, $v := .Values.l }}{{ $i }}={{ $v }};{{ end }}", {"l": ["a", "b"]},
     "0=a;1=b;"),
    ("{{ range $k, $v := .Values.m }}{{ $k }}={{ $v }};{{ else }}none{{ end }}",
     {"m": {"b": 2, "a": "x"}}, "a=x;b=2;"),
    ("{{ range .Values.m }}x{{ else }}none{{ end }}", {"m": {}}, "none"),
    ("{{ with .Values.m }}{{ .a }}{{ else }}empty{{ end }}", {"m": {"a": 1}}, "1"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}", {}, "2"),
    ("{{ if true }}{{ $y := 3 }}{{ end }}{{ $y }}", {}, "!undefined variable"),
    ("{{ range .Values.l }}{{ $.Values.p }}{{ . }}{{ end }}", {"l": [1, 2], "p": "-"}, "-1-2"),
    ("{{ toYaml .Values.m | nindent 2 }}", {"m": {"b": [1, 2], "a": {"c": "on"}}},
     "\n  a:\n    c: 'on'\n  b:\n  - 1\n  - 2"),
    ("{{ toYaml .Values.m }}|{{ toYaml .Values.e }}|{{ toYaml .Values.s }}",
     {"m": {"a": 1.5}, "e": {}, "s": "x"}, "a: 1.5|{}|x"),
    ("{{ toJson .Values.m }}", {"m": {"b": "<&>", "a": 10}},
     '{"a":10,"b":"\\u003c\\u0026\\u003e"}'),
    ("{{ default \"d\" .Values.e }}{{ default \"d\" .Values.s }}{{ .Values.z | default 5 }}",
     {"e": "", "s": "s", "z": 0}, "ds5"),
    ("{{ printf \"%s-%v:%d %q %%\" \"a\" .Values.n 3 \"q\" }}", {"n": 8080}, 'a-8080:3 "q" %'),
    ("{{ printf \"%d\" .Values.n }}", {"n": 1}, "!use %v"),
    ("{{ printf \"%s\" }}", {}, "!missing argument"),
    ("{{ and 1 0 2 }}{{ or 0 \"\" \"x\" }}{{ not 0 }}{{ and .Values.m .Values.m.a }}",
     {"m": {"a": "y"}}, "0xtruey"),
    ("{{ or true .Values.nope }}", {}, "true"),
    ("{{ \"x\" | sha256sum | trunc 8 }}", {}, "2d711642"),
    ("{{ indent 2 \"a\\nb\" }}", {}, "  a\n  b"),
    ("{{ .Values.m }}", {"m": {"a": 1}}, "!refusing to print"),
    ("{{ required \"need x\" .Values.x }}", {"x": ""}, "!need x"),
    ("{{ fail \"stop\" }}", {}, "!stop"),
    ("{{ define \"t\" }}[{{ . }}]{{ end }}{{ include \"t\" \"v\" }}", {}, "[v]"),
    ("{{ include \"nope\" . }}", {}, "!no template"),
    ("{{ (include \"t2\" .).x }}{{ define \"t2\" }}x{{ end }}", {}, "!can't evaluate field"),
    ("{{ .Files.Get \"nope.txt\" }}", {}, "!no such file"),
    ("{{ if }}", {}, "!missing value"),
    ("{{ if true }}x", {}, "!without end"),
    ("{{ end }}", {}, "!unexpected"),
    ("{{ 'c' }}", {}, "!character constants"),
    ("{{ eq \"a\" \"b\" \"a\" }}{{ ne 1 2 }}{{ lt 1 2 }}{{ ge \"b\" \"a\" }}", {},
     "truetruetruetrue"),
    ("{{ .Values.s | quote }}", {"s": "a\"b\n\t"}, '"a\\"b\\n\\t"'),
]


def selftest():
    failures = 0
    for i, (tpl, values, want) in enumerate(SELFTEST):
        defines = {}
        try:
            nodes = Parser(lex_template(tpl, f"case{i}"), f"case{i}", defines).parse()
            root = {"Values": helm_values(values),
                    "Release": {"Name": "r", "Namespace": "n", "Service": "Helm"},
                    "Chart": {"Name": "c", "Version": "1", "AppVersion": "1"},
                    "Files": FilesObject(os.path.dirname(os.path.abspath(__file__)))}
            got = Engine(defines).execute(nodes, root)
            err = None
        except RenderError as e:
            got, err = None, str(e)
        if want.startswith("!"):
            ok = err is not None and want[1:] in err
        else:
            ok = err is None and got == want
        if not ok:
            failures += 1
            print(f"selftest case {i} FAILED: {tpl!r}\n  want {want!r}\n  got  "
                  f"{got!r} error={err!r}", file=sys.stderr)
    floats = {1.0: "1", 100000.0: "100000", 1e6: "1e+06", 0.0001: "0.0001", 1e-5: "1e-05",
              123456789.0: "1.23456789e+08", -2.5: "-2.5", 1e21: "1e+21", 0.1 + 0.2:
              "0.30000000000000004"}
    for f, want in floats.items():
        if go_float(f) != want:
            failures += 1
            print(f"selftest go_float({f!r}) = {go_float(f)!r}, want {want!r}", file=sys.stderr)
    total = len(SELFTEST) + len(floats)
    print(f"render.py selftest: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("template", help="render a chart")
    t.add_argument("chart")
    t.add_argument("-f", "--values", action="append", default=[])
    t.add_argument("--release-name", default="gitrev")
    t.add_argument("--namespace", default="default")
    t.add_argument("--notes", action="store_true")
    c = sub.add_parser("check", help="check a rendered stream")
    c.add_argument("file")
    c.add_argument("--kube-version", action="append", default=[],
                   help="Kubernetes schema version, repeatable (default 1.30.0)")
    c.add_argument("--external", action="append", default=[], metavar="KIND/NAME",
                   help="an object the chart uses but does not create (e.g. Secret/app-db)")
    c.add_argument("--expect-kind", action="append", default=[])
    c.add_argument("--forbid-kind", action="append", default=[])
    c.add_argument("--settings-source")
    c.add_argument("--metrics-source")
    c.add_argument("--runbooks")
    c.add_argument("--no-kube-validate", action="store_true")
    sub.add_parser("selftest")
    d = sub.add_parser("doc-check", help="values.yaml comments and the README values table")
    d.add_argument("chart")
    m = sub.add_parser("compare", help="semantic difference of two rendered streams")
    m.add_argument("first")
    m.add_argument("second")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "selftest":
            return selftest()
        if args.cmd == "doc-check":
            problems = doc_check(args.chart)
            for p in problems:
                print(f"doc-check: {p}", file=sys.stderr)
            print(f"doc-check: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        if args.cmd == "compare":
            with open(args.first, encoding="utf-8") as fa, \
                    open(args.second, encoding="utf-8") as fb:
                diffs = compare_streams(fa.read(), fb.read())
            for x in diffs:
                print(f"compare: {x}", file=sys.stderr)
            print(f"compare: {'identical' if not diffs else f'{len(diffs)} difference(s)'}")
            return 1 if diffs else 0
        if args.cmd == "template":
            sys.stdout.write(render_chart(args.chart, args.values, args.release_name,
                                          args.namespace, args.notes))
            return 0
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
        problems, docs = check_stream(
            text, args.kube_version or ["1.30.0"], args.external, args.expect_kind,
            settings_from(args.settings_source) if args.settings_source else None,
            known_metrics_from(args.metrics_source) if args.metrics_source else None,
            runbook_anchors(args.runbooks) if args.runbooks else None,
            kube_validate=not args.no_kube_validate, forbid_kinds=args.forbid_kind)
        for p in problems:
            print(f"check: {p}", file=sys.stderr)
        kinds = sorted({d['kind'] for _, d in docs})
        versions = ", ".join(args.kube_version or ["1.30.0"])
        print(f"check: {len(docs)} documents ({', '.join(kinds)}; Kubernetes {versions}): "
              f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    except RenderError as e:
        msg = str(e)
        print(f"render.py: error: {msg[1:] if msg.startswith('@') else msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
