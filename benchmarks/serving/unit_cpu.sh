#!/bin/sh
# CPU seconds used by the processes of a systemd unit (run inside the lab
# host): user + system time of every process in its cgroup, plus that of
# their children already reaped (the compiler runs torch.compile starts).
# A load-independent measure of start-up work on a shared machine.
cg=$(systemctl show -p ControlGroup --value "$1")
f=/sys/fs/cgroup/systemd$cg/cgroup.procs
[ -r "$f" ] || f=/sys/fs/cgroup$cg/cgroup.procs
t=0
for p in $(cat "$f"); do
  # shellcheck disable=SC2046
  set -- $(cut -d')' -f2 "/proc/$p/stat")
  t=$((t + ${12} + ${13} + ${14} + ${15}))
done
echo "$t $(getconf CLK_TCK)" | awk '{ printf "%.1f\n", $1 / $2 }'
