# Shared by the perf/ scripts that measure against the rest of the machine; sourced (from the
# repository's root), not run.

# Installs from Debian the commands that are missing: `need_commands wrk curl psql=postgresql-client`
# (command=package when they differ).
need_commands() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%=*}" > /dev/null || missing+=("${spec#*=}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" > /dev/null
  fi
}

# On exit (`trap cleanup EXIT`): stops a gitrev still running as GPID and removes DATA.
GPID=""
DATA=""
cleanup() {
  [ -n "$GPID" ] && kill -TERM "$GPID" 2>/dev/null && wait "$GPID" 2>/dev/null
  [ -n "$DATA" ] && rm -rf "$DATA"
  true
}
#
# CPU accounting in clock ticks: the machine's busy CPU, this script's own (its reaped children
# such as wrk, plus the processes GPID and CPID name when set — gitrev with its PostgreSQL, the
# ceiling — and their children), and the machine's total.
cpu_snapshot() {
  python3 - "$$" ${GPID:-} ${CPID:-} <<'EOF'
import os, sys
shell, roots = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
with open("/proc/stat") as f:
    v = [int(x) for x in f.readline().split()[1:]]
busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
total = busy + v[3] + v[4]  # and idle, iowait: the elapsed time times the number of CPUs
def stat(pid):  # (ppid, utime + stime + cutime + cstime, cutime + cstime)
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(rest[1]), sum(int(x) for x in rest[11:15]), int(rest[13]) + int(rest[14])
procs = {}
for d in os.listdir("/proc"):
    if d.isdigit() and (s := stat(int(d))):
        procs[int(d)] = s
children = {}
for pid, (ppid, _, _) in procs.items():
    children.setdefault(ppid, []).append(pid)
ours = procs[shell][2]  # the shell's reaped children: wrk, curl, ...
stack = [p for p in roots if p in procs]  # gitrev (and its PostgreSQL) or the ceiling, running
while stack:
    pid = stack.pop()
    ours += procs[pid][1]
    stack.extend(children.get(pid, []))
print(busy, ours, total)
EOF
}
others_pct() { # snapshot-before snapshot-after -> % of one core used by other processes
  python3 -c "
b0, o0, t0 = map(int, '$1'.split()); b1, o1, t1 = map(int, '$2'.split())
print(max(0, round(100 * $(nproc) * ((b1 - b0) - (o1 - o0)) / max(1, t1 - t0))))"
}

# Stops the gitrev started as GPID and removes its data directory DATA.
stop() {
  kill -TERM "$GPID"
  wait "$GPID" || true
  GPID=""
  rm -rf "$DATA"
  DATA=""
}
