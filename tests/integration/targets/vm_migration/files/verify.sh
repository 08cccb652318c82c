# Runs inside the test guest: stops the writer, drops the page cache and reads every written block back
# from the disk. Prints "blocks=N bad=B maxgap_cs=G error=E": B blocks that do not check, G the longest
# pause between two consecutive writes (guest time, centiseconds).
dev=$1
touch /tmp/kvmf-stop
n=0
while [ ! -e /tmp/kvmf-stopped ] && [ $n -lt 100 ]; do usleep 100000; n=$((n + 1)); done
last=$(cat /tmp/kvmf-seq)
sync
echo 3 > /proc/sys/vm/drop_caches
bad=0; gap=0; prev=; j=0
dd if="/dev/$dev" bs=512 count=$((last + 1)) iflag=direct 2>/dev/null | tr -d '\000' > /tmp/kvmf-read
while read -r tag i cs h; do
  want=$(echo "$i $cs" | sha256sum | cut -c1-16)
  if [ "$tag" != kvmf ] || [ "$i" != "$j" ] || [ "$h" != "$want" ]; then bad=$((bad + 1)); fi
  if [ -n "$prev" ] && [ $((cs - prev)) -gt $gap ]; then gap=$((cs - prev)); fi
  prev=$cs
  j=$((j + 1))
done < /tmp/kvmf-read
[ $j -eq $((last + 1)) ] || bad=$((bad + last + 1 - j))
echo "blocks=$((last + 1)) bad=$bad maxgap_cs=$gap error=$(cat /tmp/kvmf-error 2>/dev/null | tr ' ' _)"
