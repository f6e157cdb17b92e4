#!/usr/bin/env bash
# A real Apache Kafka broker for tests: one KRaft node (broker + controller in one JVM) on
# 127.0.0.1 only, from the Maven Central jars of scripts/services/kafka/pom.xml (cached under
# $RHEO_CACHE/kafka/<version>/libs). Every start formats a fresh log dir with a new cluster id.
# Besides PLAINTEXT on KAFKA_PORT, a SASL_PLAINTEXT listener with SCRAM-SHA-512 (user rheo) on a
# port the OS picks: the env lines give it as KAFKA_SASL_BOOTSTRAP, KAFKA_SASL_USERNAME/PASSWORD.
#
#   scripts/services/kafka.sh start              # fetch jars if needed, start, wait until metadata
#                                                #   answers, print env lines (KAFKA_BOOTSTRAP)
#   scripts/services/kafka.sh stop               # SIGTERM, wait for the clean shutdown
#   scripts/services/kafka.sh status             # exit 0 if running
#   scripts/services/kafka.sh env                # the env lines only
#   scripts/services/kafka.sh fetch              # only cache the jars
#   scripts/services/kafka.sh topic-create NAME PARTS [TopicCommand args...]
#   scripts/services/kafka.sh produce TOPIC [ConsoleProducer args...]   # lines from stdin
#   scripts/services/kafka.sh consume TOPIC [ConsoleConsumer args...]   # read_committed, from the
#                                                #   beginning, exits after KAFKA_CONSUME_TIMEOUT_MS idle
#
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_RUN_DIR ($RHEO_CACHE/kafka/run-PORT),
#      KAFKA_START_TIMEOUT (120 s), KAFKA_STOP_TIMEOUT (60 s), KAFKA_HEAP_OPTS (-Xmx512m -Xms256m),
#      JAVA (java).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RHEO_CACHE:-$HOME/.cache/rheo}
pom=$here/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
libs=$cache/kafka/$version/libs
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-9093}
run=${KAFKA_RUN_DIR:-$cache/kafka/run-$port}
java=${JAVA:-java}
bootstrap=127.0.0.1:$port

# The SASL_PLAINTEXT listener with SCRAM-SHA-512 (user rheo): an ephemeral port, found after start.
sasl_user=rheo
sasl_password=rheo-secret

print_env() {
  echo "export KAFKA_BOOTSTRAP=$bootstrap"
  if [[ -s $run/sasl-port ]]; then
    echo "export KAFKA_SASL_BOOTSTRAP=127.0.0.1:$(cat "$run/sasl-port") KAFKA_SASL_USERNAME=$sasl_user KAFKA_SASL_PASSWORD=$sasl_password"
  fi
}

# The jars, once per pom content: mvn copies the runtime closure of the pom into a temp dir,
# which is renamed into place only when complete.
fetch() {
  local want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [[ -f $libs/.pom.sha && "$(cat "$libs/.pom.sha")" == "$want" ]]; then
    return
  fi
  command -v mvn >/dev/null || { echo "kafka.sh: mvn not found (Maven 3 is needed to fetch Kafka $version)" >&2; exit 1; }
  local tmp=$libs.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$cache/m2"
  echo "kafka.sh: fetching Apache Kafka $version jars into $libs" >&2
  mkdir -p "$cache/kafka/$version"
  local log=$cache/kafka/$version/fetch.log
  if ! mvn -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$cache/m2" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
    rm -rf "$tmp"
    echo "kafka.sh: mvn dependency:copy-dependencies failed for $pom; the end of $log follows" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "$want" >"$tmp/.pom.sha"
  rm -rf "$libs" "$cache/kafka/$version/"*.jsa
  mv "$tmp" "$libs"
}

check_java() {
  local v
  v=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  if [[ -z $v || $v -lt 17 ]]; then
    echo "kafka.sh: Kafka $version needs Java 17 or newer; '$java -version' says: $("$java" -version 2>&1 | head -1)" >&2
    exit 1
  fi
}

# Class data sharing (AppCDS): the first JVM of a kind dumps the classes it loaded into an archive
# when it exits (-XX:ArchiveClassesAtExit); later ones map it (-XX:SharedArchiveFile). That halves
# the broker's CPU time to ready. One archive per kind, Kafka version and JVM build; a stale or
# foreign one is ignored by the JVM (-Xshare:auto), never fatal.
cds_archive() { # KIND -> path of the archive
  local jvm
  jvm=$("$java" -version 2>&1 | head -2 | sha256sum | cut -c1-12)
  echo "$cache/kafka/$version/$1-$jvm.jsa"
}

cds_opts() { # KIND DUMP_PATH -> JVM options
  local jsa
  jsa=$(cds_archive "$1")
  if [[ -f $jsa ]]; then
    echo "-XX:SharedArchiveFile=$jsa"
  else
    echo "-XX:ArchiveClassesAtExit=$2"
  fi
}

cds_keep() { # KIND DUMP_PATH: move a dump made at exit into place
  if [[ -s $2 ]]; then
    mv -f "$2" "$(cds_archive "$1")"
  fi
  rm -f "$2"
}

# A command-line tool of the Kafka distribution (a short-lived JVM): quiet logs, fast start.
# JVM log lines (CDS warnings) go to stderr only, so stdout stays the tool's own output.
kafka_tool() {
  local dump=$cache/kafka/$version/tools.jsa.$$ rc=0
  # shellcheck disable=SC2046
  "$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Xlog:disable -Xlog:all=error:stderr $(cds_opts tools "$dump") \
    -Dlog4j2.configurationFile="$libs/../log4j2-tools.properties" -cp "$libs/*" "$@" || rc=$?
  cds_keep tools "$dump"
  return $rc
}

write_tools_log_config() {
  cat >"$libs/../log4j2-tools.properties" <<'PROPS'
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
PROPS
}

pid_alive() {
  [[ -f $run/pid ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null
}

write_config() {
  cat >"$run/server.properties" <<PROPS
# Written by scripts/services/kafka.sh: a single KRaft node for tests, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
# A second client listener with SASL/SCRAM on a port the OS picks (advertised as the bound one),
# for tests that credentials reach the broker (KAFKA_SASL_BOOTSTRAP).
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_PLAINTEXT://127.0.0.1:0
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_PLAINTEXT://127.0.0.1:0
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$run/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# Internal topics on one node: replication factor 1, few partitions (faster first use).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests want a group to start at once, not after the default 3 s.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.segment.bytes=67108864
PROPS
  cat >"$run/log4j2.properties" <<PROPS
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $run/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
PROPS
}

start() {
  if pid_alive; then
    print_env
    return
  fi
  local p
  for p in "$port" "$cport"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "kafka.sh: 127.0.0.1:$p is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)" >&2
      exit 1
    fi
  done
  check_java
  fetch
  write_tools_log_config
  rm -rf "$run"
  mkdir -p "$run/data" "$run/logs"
  write_config
  # A random cluster id: 16 random bytes, base64url without padding (Kafka's Uuid text form).
  # Like Kafka's own Uuid.randomUuid, never one that starts with '-': the tool would take it for
  # an option ("argument --cluster-id/-t: expected one argument").
  local cluster_id=-
  while [[ $cluster_id == -* ]]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  echo "$cluster_id" >"$run/cluster-id"
  local tf
  tf=$(date +%s%N)
  if ! kafka_tool kafka.tools.StorageTool format --config "$run/server.properties" \
      --cluster-id "$cluster_id" --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]" \
      >"$run/logs/format.log" 2>&1; then
    echo "kafka.sh: formatting $run/data failed; $run/logs/format.log follows" >&2
    cat "$run/logs/format.log" >&2
    exit 1
  fi
  echo "kafka.sh: formatted $run/data (cluster $cluster_id) in $(((($(date +%s%N) - tf) / 1000000))) ms" >&2
  local t0
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  nohup "$java" ${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    $(cds_opts broker "$run/broker.jsa") -Djava.awt.headless=true -Dkafka.logs.dir="$run/logs" \
    -Dlog4j2.configurationFile="$run/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$run/server.properties" </dev/null >"$run/logs/kafka.out" 2>&1 &
  echo $! >"$run/pid"
  # Ready = the broker answers a metadata request and lists itself (an admin client round trip),
  # polled by one Python process that also notices the JVM dying.
  local bin
  bin=$("$here/../pyenv.sh")
  if ! "$bin/python" - "$bootstrap" "$(cat "$run/pid")" "${KAFKA_START_TIMEOUT:-120}" <<'PY'; then
import os, sys, time
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

bootstrap, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
# log_level 0: no "connection refused" noise while the broker is still starting.
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
deadline = time.monotonic() + timeout
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(2)
    try:
        md = admin.list_topics(timeout=1)
        if md.brokers:
            sys.exit(0)
    except KafkaException:
        pass
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.1)
PY
    if ! pid_alive; then
      echo "kafka.sh: the Kafka broker exited during start; see $run/logs/server.log and $run/logs/kafka.out" >&2
      tail -n 30 "$run/logs/kafka.out" >&2 || true
      grep -E 'ERROR|FATAL|Exception|Caused by' "$run/logs/server.log" 2>/dev/null | tail -n 12 >&2 || true
    else
      echo "kafka.sh: Kafka did not answer on $bootstrap within ${KAFKA_START_TIMEOUT:-120} s; see $run/logs/server.log" >&2
      stop
    fi
    rm -f "$run/pid"
    exit 1
  fi
  # The SASL listener's port: the broker's listening port that is neither of the fixed ones.
  ss -Hltnp 2>/dev/null | grep "pid=$(cat "$run/pid")," | awk '{print $4}' | sed 's/.*://' \
    | grep -vx -e "$port" -e "$cport" | head -1 >"$run/sasl-port" || true
  echo "kafka.sh: Kafka $version ready on $bootstrap $(((($(date +%s%N) - t0) / 1000000))) ms after launch (pid $(cat "$run/pid"), logs in $run/logs)" >&2
  print_env
}

stop() {
  if [[ -f $run/pid ]]; then
    local pid
    pid=$(cat "$run/pid")
    if kill "$pid" 2>/dev/null; then
      # A clean KRaft shutdown takes a few seconds; wait so the ports are free for the next start.
      # Dumping the class archive at the first exit takes long on a busy machine: allow more then.
      local limit=${KAFKA_STOP_TIMEOUT:-60}
      [[ -f $(cds_archive broker) ]] || limit=$((limit * 3))
      local deadline=$((SECONDS + limit))
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        echo "kafka.sh: broker pid $pid still alive after $limit s; SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$run/broker.jsa"
      fi
    fi
    rm -f "$run/pid"
    # The first broker of this version and JVM wrote its class archive on the way out.
    cds_keep broker "$run/broker.jsa"
  fi
}

status() {
  if pid_alive; then
    echo "kafka $version running: pid $(cat "$run/pid"), $bootstrap, run dir $run"
  else
    echo "kafka $version not running ($bootstrap)"
    return 1
  fi
}

need_running() {
  pid_alive || { echo "kafka.sh: no broker running on $bootstrap (run: $0 start)" >&2; exit 1; }
  [[ -f $libs/../log4j2-tools.properties ]] || write_tools_log_config
}

cmd=${1:-start}
shift || true
case $cmd in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  fetch) check_java; fetch ;;
  topic-create)
    [[ $# -ge 2 ]] || { echo "usage: $0 topic-create NAME PARTITIONS [args...]" >&2; exit 2; }
    need_running
    name=$1 parts=$2
    shift 2
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create \
      --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 "$@"
    ;;
  produce)
    [[ $# -ge 1 ]] || { echo "usage: $0 produce TOPIC [args...] < lines" >&2; exit 2; }
    need_running
    topic=$1
    shift
    kafka_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$bootstrap" --topic "$topic" "$@"
    ;;
  consume)
    [[ $# -ge 1 ]] || { echo "usage: $0 consume TOPIC [args...]" >&2; exit 2; }
    need_running
    topic=$1
    shift
    kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bootstrap" \
      --topic "$topic" --from-beginning --isolation-level read_committed \
      --timeout-ms "${KAFKA_CONSUME_TIMEOUT_MS:-10000}" "$@"
    ;;
  *) echo "usage: $0 start|stop|status|env|fetch|topic-create NAME PARTS|produce TOPIC|consume TOPIC" >&2; exit 2 ;;
esac
