#!/usr/bin/env bash
# Private single-node Apache Kafka broker (KRaft, broker+controller) on loopback
# for nanguard's tests and demo, run from the Maven Central jars.
#
# Usage:
#   kafka.sh fetch                    download the jars once (Maven) into the cache
#   kafka.sh start DIR [PORT]         format DIR once, start on 127.0.0.1:PORT (default
#                                     19092, or the last port; controller on PORT+1),
#                                     print the bootstrap address on stdout
#   kafka.sh stop DIR                 SIGTERM, SIGKILL after 30 s (no-op when stopped)
#   kafka.sh restart DIR              stop, then start on the same port
#   kafka.sh kill DIR                 SIGKILL (crash tests)
#   kafka.sh status DIR               exit 0 when running, 3 when not
#   kafka.sh topic DIR NAME PARTS     create a topic if missing (replication factor 1)
#   kafka.sh topics DIR NAME:PARTS... same for several topics
#
# Environment: KAFKA_VERSION (the release to run; a 3.x release such as
# 3.9.2 works too, logging through its own reload4j), NANGUARD_CACHE
# (default ~/.cache/nanguard; jars go to kafka-VERSION/lib, one directory
# per version), KAFKA_HEAP (default "-Xms256m -Xmx1g").
#
# Which release runs, when KAFKA_VERSION is not set: the one DIR last ran
# (DIR/kafka.version, so restart keeps it); for a new DIR, 4.3.1,
# except with a SCRAM listener (below, without KAFKA_SASL_PLAIN) on a
# machine whose librdkafka is older than 2.6.1: then KAFKA_SCRAM_VERSION
# (default 3.9.2), as librdkafka before 2.6.1 (Debian 12 has 2.0.2)
# cannot log in with SCRAM to Kafka 4 (README, "TLS, authentication and
# secrets"); the choice is logged.
#
# A SASL_SSL listener (SCRAM-SHA-512) beside the PLAINTEXT one, at start:
#   KAFKA_SASL_SSL_PORT=PORT          listen on 127.0.0.1:PORT, advertised
#                                     as localhost:PORT
#   KAFKA_SSL_CERT=FILE KAFKA_SSL_KEY=FILE   the broker's certificate (PEM,
#                                     for localhost) and its unencrypted
#                                     PKCS#8 PEM key
#   KAFKA_SCRAM_USER=NAME (default nanguard)
#   KAFKA_SCRAM_PASSWORD_FILE=FILE    the user's password: the first line
#   KAFKA_SASL_PLAIN=1                also offer PLAIN for the same user and
#                                     password (for librdkafka before 2.6.1 on
#                                     Kafka 4, whose SCRAM check it fails:
#                                     it repeats the client nonce); the
#                                     password is then in DIR/server.properties
#                                     (mode 0600)
# The settings but the password are kept in DIR for restart; the password
# is read from its file at each start and written nowhere (Kafka's
# ConfigCommand takes it as an argument, with its output discarded).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
default_version=4.3.1
scram_version=${KAFKA_SCRAM_VERSION:-3.9.2}  # a release whose SCRAM check librdkafka < 2.6.1 passes
log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '5,15s/^# \{0,1\}//p' "$0" >&2; exit 2; }

rdkafka=$(pkg-config --modversion rdkafka 2>/dev/null || true)  # this machine's librdkafka
old_librdkafka() {  # true when it is older than 2.6.1
    [[ -n $rdkafka && $(printf '%s\n' "$rdkafka" 2.6.1 | sort -V | head -1) != 2.6.1 ]]
}

choose_version() {  # sets version and lib (see the head of this file)
    if [[ -n ${KAFKA_VERSION:-} ]]; then
        version=$KAFKA_VERSION
    elif [[ -n ${dir:-} && -s $dir/kafka.version ]]; then
        version=$(<"$dir/kafka.version")
    elif [[ ${cmd:-} == *start && ! -e ${dir:-}/logs/meta.properties &&
        -n ${KAFKA_SASL_SSL_PORT:-} && -z ${KAFKA_SASL_PLAIN:-} ]] && old_librdkafka; then
        version=$scram_version
        log "Kafka $version for the SCRAM listener: this machine's librdkafka" \
            "$rdkafka cannot log in with SCRAM to Kafka 4" \
            "(set KAFKA_VERSION to choose)"
    else
        version=$default_version
    fi
    [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "bad Kafka version: $version"
    lib=${NANGUARD_CACHE:-$HOME/.cache/nanguard}/kafka-$version/lib
}

need() {  # need CMD...: install the Debian packages when a tool is missing
    local c
    for c; do
        command -v "$c" >/dev/null || "$here/../install-deps.sh" || die "cannot install $c"
    done
}

fetch() {
    [[ -f $lib/.complete ]] && return
    need mvn java
    log "fetching Kafka $version jars into $lib"
    rm -rf "$lib.tmp"
    local out logging=()
    ((${version%%.*} >= 4)) || logging=(-Dkafka.log4j1)  # 3.x brings reload4j
    if ! out=$(mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
        -Dkafka.version="$version" -Dlib.dir="$lib.tmp" "${logging[@]}" 2>&1); then
        echo "$out" >&2
        die "maven fetch failed"
    fi
    rm -rf "$lib" && mv "$lib.tmp" "$lib" && touch "$lib/.complete"
}

pid() {  # prints the broker pid if it is running
    local p
    p=$(cat "$dir/kafka.pid" 2>/dev/null) || return 1
    grep -qsF "$dir/server.properties" "/proc/$p/cmdline" && echo "$p"
}

port() { sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$dir/server.properties" 2>/dev/null | grep . || echo 19092; }

sasl_setup() {  # the SASL_SSL listener's settings, when asked for
    sasl_props=
    local env=$dir/sasl_ssl.env
    if [[ -n ${KAFKA_SASL_SSL_PORT:-} ]]; then
        [[ $KAFKA_SASL_SSL_PORT =~ ^[0-9]+$ ]] || die "bad KAFKA_SASL_SSL_PORT"
        [[ -r ${KAFKA_SSL_CERT:-} && -r ${KAFKA_SSL_KEY:-} ]] ||
            die "KAFKA_SASL_SSL_PORT needs KAFKA_SSL_CERT and KAFKA_SSL_KEY (PEM files)"
        mkdir -p "$dir"
        printf 'KAFKA_SASL_SSL_PORT=%q\nKAFKA_SSL_CERT=%q\nKAFKA_SSL_KEY=%q\nKAFKA_SCRAM_USER=%q\n' \
            "$KAFKA_SASL_SSL_PORT" "$(realpath "$KAFKA_SSL_CERT")" \
            "$(realpath "$KAFKA_SSL_KEY")" "${KAFKA_SCRAM_USER:-nanguard}" >"$env"
    elif [[ -f $env ]]; then
        # shellcheck disable=SC1090
        source "$env"
    else
        return 0
    fi
    sasl_port=$KAFKA_SASL_SSL_PORT
    (umask 077 && cat "$KAFKA_SSL_KEY" "$KAFKA_SSL_CERT" >"$dir/keystore.pem")
    local mechs=SCRAM-SHA-512 plain=
    if [[ -n ${KAFKA_SASL_PLAIN:-} && -n ${KAFKA_SCRAM_PASSWORD_FILE:-} ]]; then
        local pw
        IFS= read -r pw <"$KAFKA_SCRAM_PASSWORD_FILE" || [[ -n $pw ]] ||
            die "no password in $KAFKA_SCRAM_PASSWORD_FILE"
        mechs+=,PLAIN
        plain="
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${KAFKA_SCRAM_USER:-nanguard}=\"$pw\";"
    fi
    sasl_props="listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=$mechs$plain
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/keystore.pem"
}

scram_user() {  # the SCRAM-SHA-512 credential, from the password file
    [[ -n ${sasl_port:-} && -n ${KAFKA_SCRAM_PASSWORD_FILE:-} ]] || return 0
    local pw
    IFS= read -r pw <"$KAFKA_SCRAM_PASSWORD_FILE" || [[ -n $pw ]] ||
        die "no password in $KAFKA_SCRAM_PASSWORD_FILE"
    # Kafka's tool takes the password as an argument only: it is in this
    # local process's command line for a moment, and its output (which
    # may echo it) is thrown away.
    "${tool[@]}" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$p" --alter \
        --add-config "SCRAM-SHA-512=[password=$pw]" --entity-type users \
        --entity-name "${KAFKA_SCRAM_USER:-nanguard}" >/dev/null 2>&1 ||
        die "cannot add the SCRAM user ${KAFKA_SCRAM_USER:-nanguard}"
    log "SASL_SSL (SCRAM-SHA-512) on 127.0.0.1:$sasl_port for user ${KAFKA_SCRAM_USER:-nanguard}"
    # librdkafka before 2.6.1 (Debian 12 has 2.0.2) repeats the client
    # nonce in SCRAM's final message, which Kafka 4 refuses.
    if ((${version%%.*} >= 4)) && old_librdkafka; then
        log "warning: this machine's librdkafka $rdkafka cannot log in" \
            "with SCRAM to Kafka $version (fixed in librdkafka 2.6.1): nanguard and kcat need" \
            "KAFKA_VERSION=$scram_version for SCRAM, or PLAIN on this listener (KAFKA_SASL_PLAIN=1)"
    fi
}

write_config() {
    local p=$1 c=$(($1 + 1))
    local listeners="PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c"
    local advertised="PLAINTEXT://127.0.0.1:$p"
    local map="listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [[ -n ${sasl_port:-} ]]; then
        listeners+=",SASL_SSL://127.0.0.1:$sasl_port"
        advertised+=",SASL_SSL://localhost:$sasl_port"
        map=
    fi
    cat >"$dir/server.properties" <<PROPS
# Generated by deploy/local/kafka.sh
process.roles=broker,controller
node.id=1
listeners=$listeners
advertised.listeners=$advertised
$map
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.voters=1@127.0.0.1:$c
log.dirs=$dir/logs
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
${sasl_props:-}
# re-register quickly after a crash (kafka.sh kill): the old session must expire
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
PROPS
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local p=${1:-$(port)} i deadline
    [[ $p =~ ^[0-9]+$ ]] || die "bad port: $p"
    if pid >/dev/null; then
        [[ $p == "$(port)" ]] || die "already running in $dir on port $(port)"
        log "already running on 127.0.0.1:$p"
        echo "127.0.0.1:$p"
        return
    fi
    fetch
    need java kcat
    for i in "$p" $((p + 1)); do port_busy "$i" && die "port $i is already in use"; done
    mkdir -p "$dir"
    sasl_setup
    [[ -z ${sasl_port:-} ]] || ! port_busy "$sasl_port" || die "port $sasl_port is already in use"
    (umask 077 && write_config "$p")
    if [[ ! -f $dir/logs/meta.properties ]]; then
        log "formatting $dir/logs"
        "${tool[@]}" kafka.tools.StorageTool format -t "$("${tool[@]}" kafka.tools.StorageTool random-uuid)" \
            -c "$dir/server.properties" >/dev/null || die "storage format failed"
    fi
    echo "$version" >"$dir/kafka.version"
    log "starting Kafka $version on 127.0.0.1:$p (output: $dir/kafka.out, log: $dir/kafka.log)"
    nohup "${jvm[@]}" "${heap[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.out" 2>&1 </dev/null &
    echo $! >"$dir/kafka.pid"
    # A loaded 2-core machine was seen to need more than 90 s.
    local wait_s=${NANGUARD_KAFKA_START_TIMEOUT:-180}
    deadline=$((SECONDS + wait_s))
    while ((SECONDS < deadline)); do
        if ! pid >/dev/null; then
            tail -n 20 "$dir/kafka.out" "$dir/kafka.log" >&2 2>/dev/null || true
            die "broker exited during start-up"
        fi
        if kcat -L -b "127.0.0.1:$p" -m 1 2>/dev/null | grep -q 'broker 1 at'; then
            scram_user
            echo "127.0.0.1:$p"
            return
        fi
        sleep 0.5
    done
    die "broker not ready after $wait_s s (NANGUARD_KAFKA_START_TIMEOUT)"
}

stop() {  # stop [KILL]
    local p i
    if ! p=$(pid); then log "not running"; rm -f "$dir/kafka.pid"; return; fi
    if [[ ${1:-} == KILL ]]; then
        log "killing pid $p"
    else
        log "stopping pid $p"
        kill -TERM "$p" 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do pid >/dev/null || break; sleep 1; done
        pid >/dev/null && log "still running after 30 s, killing"
    fi
    kill -KILL "$p" 2>/dev/null || true
    while [[ -e /proc/$p ]]; do sleep 0.1; done
    rm -f "$dir/kafka.pid"
}

topics() {  # topics NAME:PARTS...
    local t
    pid >/dev/null || die "broker not running in $dir"
    for t; do
        [[ $t =~ ^([A-Za-z0-9._-]+):([0-9]+)$ ]] || die "bad topic spec: $t (want NAME:PARTITIONS)"
        "${tool[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$(port)" \
            --create --if-not-exists --topic "${BASH_REMATCH[1]}" \
            --partitions "${BASH_REMATCH[2]}" --replication-factor 1 >&2 ||
            die "cannot create topic $t"
    done
}

cmd=${1:-}
[[ $cmd == fetch ]] && { choose_version; fetch; exit; }
(($# >= 2)) || usage
dir=$(realpath -m "$2")
choose_version
read -ra heap <<<"${KAFKA_HEAP:--Xms256m -Xmx1g}"  # broker only
jvm=(java -Djava.awt.headless=true -cp "$lib/*"  # + [JVM OPTIONS] MAIN-CLASS ARGS...
    -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" -Dkafka.logs.dir="$dir"
    -Dlog4j.configuration="file:$here/kafka/log4j.properties")  # 3.x
tool=("${jvm[@]}" -XX:TieredStopAtLevel=1)  # short-lived tools start faster with C1 only
case $cmd in
start) start "${3:-}" ;;
stop) stop ;;
restart) stop; start ;;
kill) stop KILL ;;
status)
    if p=$(pid); then log "running (pid $p) on 127.0.0.1:$(port)"; else log "not running"; exit 3; fi ;;
topic) (($# == 4)) || usage; topics "$3:$4" ;;
topics) shift 2; topics "$@" ;;
*) usage ;;
esac
