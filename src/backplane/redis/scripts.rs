//! The Lua scripts the Redis backplane runs, and the keys they touch.
//!
//! Everything a publish does happens in one script, so Redis runs it as one
//! step: no replica ever sees ids assigned but not in history, or in
//! history but not published. Each script names its keys in `KEYS` (as
//! Redis asks), built by [`Keys`].
//!
//! Numbers cross into Lua as decimal strings; Lua 5.1's numbers are doubles,
//! exact to 2^53, far above any sequence number or millisecond timestamp,
//! but printed with `%.14g` by `..`, so every number is formatted with
//! `int()` before it becomes part of a key, an id or a message.

use redis::Script;

/// Every key and the channel, under `backplane.redis.key_prefix`.
///
/// - `<prefix>epoch` (string): the epoch in force; absent in a Redis that
///   came back empty, and then created anew (see `EPOCH_LUA`).
/// - `<prefix>seq` (string): the last sequence number assigned.
/// - `<prefix>clock` (stream): at most one checkpoint a second, `<ms>-0`
///   with fields `e` (epoch) and `s` (last seq then): bounds the ids of
///   topics whose keys expired (see `HISTORY_LUA`).
/// - `<prefix>h:<topic>` (stream): the topic's history, entry ids
///   `<epoch>-<seq>` (the event id itself), fields `t` (accepted, ms of
///   Redis's clock) and `e` (the event's wire JSON).
/// - `<prefix>m:<topic>` (string): the id of the newest entry trimmed from
///   that history (by count or age): the edge below which a resume has a gap.
/// - `<prefix>topics` (sorted set): every topic with history, scored by the
///   seq of its last publish: least recently published first, the order
///   of eviction at `history.max_topics` and `history.max_bytes`.
/// - `<prefix>sizes` (hash): per topic, the bytes its history is counted
///   at (entries' JSON plus an overhead, see `PUBLISH_LUA`).
/// - `<prefix>bytes` (string): the sum of `sizes`, against
///   `history.max_bytes`.
/// - `<prefix>evicted` (string): `<epoch>-<seq>`, the newest id of a topic
///   dropped whole at a global bound: a topic without keys may have held
///   events up to it.
/// - `<prefix>i:<digest>` (string, expiring after `limits.idempotency_window`):
///   a keyed publish's record, `<fingerprint> <epoch> <first seq> <count>`
///   (hex SHA-256 digests: the name is the publisher's scope and key, so
///   every record is under 110 bytes whatever the key); see `PUBLISH_LUA`.
/// - `<prefix>health` (string): written by each replica's health check.
/// - `<prefix>events` (channel): one message per publish call.
///
/// The history and trim keys expire `history.ttl` (plus a margin) after the
/// topic's last publish, so idle topics cost nothing. Their entries in
/// `topics` and `sizes` stay until evicted; being the least recently
/// published, they go first, so counting them only makes the bounds err
/// safe.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    pub epoch: String,
    pub seq: String,
    pub clock: String,
    pub topics: String,
    pub sizes: String,
    pub bytes: String,
    pub evicted: String,
    pub health: String,
    pub channel: String,
}

impl Keys {
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            epoch: format!("{prefix}epoch"),
            seq: format!("{prefix}seq"),
            clock: format!("{prefix}clock"),
            topics: format!("{prefix}topics"),
            sizes: format!("{prefix}sizes"),
            bytes: format!("{prefix}bytes"),
            evicted: format!("{prefix}evicted"),
            health: format!("{prefix}health"),
            channel: format!("{prefix}events"),
        }
    }

    /// The history stream of `topic`. The fixed `h:`/`m:` part keeps a
    /// topic named `x:m` from colliding with another's trim key.
    pub fn history(&self, topic: &str) -> String {
        format!("{}h:{topic}", self.prefix)
    }

    pub fn trimmed(&self, topic: &str) -> String {
        format!("{}m:{topic}", self.prefix)
    }

    /// The record of a keyed publish, by the hex digest of its scope and
    /// key; a publish without a key names the bare `i:` (never written).
    pub fn idempotency(&self, record_hex: &str) -> String {
        format!("{}i:{record_hex}", self.prefix)
    }
}

/// Shared by the scripts that may have to start an epoch: `KEYS[1]` epoch,
/// `KEYS[2]` seq, `ARGV[1]` the epoch this replica knows ('' if none),
/// `ARGV[2]` the newest seq it has seen in it.
///
/// A new epoch starts when the epoch key is gone (a Redis that came back
/// empty) or when the counter is below what this replica has already seen
/// in the same epoch (a Redis restarted from an older snapshot: its ids
/// would be handed out twice). Epochs are Redis's clock in seconds, and
/// always above the one they replace, so history entries of an older epoch
/// sort before the new one's.
const EPOCH_LUA: &str = r#"
local function int(n) return string.format('%d', n) end
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now = now_s * 1000 + math.floor(tonumber(clock[2]) / 1000)
local epoch = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local known = tonumber(ARGV[1])
if (not epoch) or (known and tonumber(epoch) == known and seq < tonumber(ARGV[2])) then
  local fresh = now_s
  if known and fresh <= known then fresh = known + 1 end
  if epoch and fresh <= tonumber(epoch) then fresh = tonumber(epoch) + 1 end
  epoch = int(fresh)
  redis.call('SET', KEYS[1], epoch)
end
"#;

/// One publish call. `KEYS`: epoch, seq, clock, topics, sizes, bytes,
/// evicted, idempotency record, then per event its history and trim keys.
/// `ARGV`: known epoch, known seq (see `EPOCH_LUA`), history size, history
/// ttl (ms), key lifetime (ms), channel, max topics, max bytes, key prefix,
/// fingerprint ('' without a key), idempotency window (ms), then one wire
/// JSON per event. Returns `{'published', epoch, first seq, accepted ms,
/// events evicted for max topics, events evicted for max bytes}`; the ids
/// of the batch are contiguous from the first.
///
/// Idempotency: with a fingerprint, the record is looked up first. Found
/// with the same fingerprint, nothing is published and the script returns
/// `{'replayed', epoch, first seq, count}` of the publish that made it
/// (after setting the record's TTL to what it is: a write, which a `WAIT`
/// of the replaying connection then covers, with `replicas_ack`);
/// with another, `{'key_reused'}`. Not found, the events are published and
/// the record is written in the same step, so two replicas racing on one
/// key can't both publish: Redis runs one script after the other.
///
/// Trimming: after each append the oldest entries go while the stream is
/// over `size` or they are older than the ttl (a few per call, so a call
/// stays short; reads skip expired entries anyway); the newest id trimmed
/// is kept in the trim key, which is what makes gap detection exact.
///
/// Global bounds, after each append (see `Keys`): while more topics than
/// the max are listed, the least recently published one is dropped whole;
/// while the counted bytes are over the max, the least recently published
/// topic loses its oldest entries (and goes whole when one is left), never
/// the entry just appended. A topic dropped whole leaves its newest id in
/// the evicted key, which `HISTORY_LUA` reads for a topic without keys; a
/// topic whose stream is created anew starts with that id as its trim
/// mark, as it may have had events before. A listed topic whose keys
/// expired (its last publish is older than the key lifetime, so it is
/// among the least recently published) costs nothing to drop.
///
/// The message is `<epoch> <first> <ms> <count>` and one JSON per line
/// (serde_json never writes a raw line break).
const PUBLISH_LUA: &str = r#"
-- What an entry costs besides its JSON (id, time field, listpack
-- framing), and a topic besides its entries: the stream's first node
-- (Redis 7 preallocates stream-node-max-bytes, 4 KiB, for it), its keys and
-- their expiry, its members in the topics and sizes keys. Estimates that
-- err high (50,000 one-event topics take ~4.3 KiB each in used_memory).
local ENTRY_OVERHEAD = 64
local TOPIC_OVERHEAD = 4608
local fingerprint = ARGV[10]
if fingerprint ~= '' then
  local recorded = redis.call('GET', KEYS[8])
  if recorded then
    local fp, e, f, n = string.match(recorded, '^(%x+) (%d+) (%d+) (%d+)$')
    if fp == fingerprint then
      -- A write (the record's own TTL again) so that this connection's
      -- WAIT, with replicas_ack, covers the record and what came before it.
      redis.call('PEXPIRE', KEYS[8], math.max(redis.call('PTTL', KEYS[8]), 1))
      return { 'replayed', e, f, n }
    end
    return { 'key_reused' }
  end
end
local count = #ARGV - 11
local first = redis.call('INCRBY', KEYS[2], count) - count + 1
local size = tonumber(ARGV[3])
local cutoff = now - tonumber(ARGV[4])
local lifetime = ARGV[5]
local max_topics = tonumber(ARGV[7])
local max_bytes = tonumber(ARGV[8])
local prefix = ARGV[9]
local total = tonumber(redis.call('GET', KEYS[6]) or '0')
local evicted_seq = -1
local evicted = redis.call('GET', KEYS[7])
if evicted then
  local e, s = string.match(evicted, '^(%d+)-(%d+)$')
  if e == epoch then evicted_seq = tonumber(s) end
end
local for_topics, for_bytes = 0, 0
local listed = redis.call('ZCARD', KEYS[4])
local function entry_cost(entry) return #entry[2][4] + ENTRY_OVERHEAD end
-- Drops the entries up to `last` (an entry id) from a stream and keeps
-- that id as its trim mark, expiring with the stream.
local function trim_through(history, trimmed, last)
  local e, s = string.match(last, '^(%d+)-(%d+)$')
  redis.call('XTRIM', history, 'MINID', e .. '-' .. int(tonumber(s) + 1))
  redis.call('SET', trimmed, last, 'PX', math.max(redis.call('PTTL', history), 1))
end
local function drop_topic(name, newest)
  local history = prefix .. 'h:' .. name
  local held = redis.call('XLEN', history)
  -- invariant: no silent loss: a read of a topic without keys, or one
  -- created anew, takes this as the edge below which events may be gone.
  if held > 0 and newest > evicted_seq then evicted_seq = newest end
  redis.call('UNLINK', history, prefix .. 'm:' .. name)
  total = total - tonumber(redis.call('HGET', KEYS[5], name) or '0')
  redis.call('HDEL', KEYS[5], name)
  redis.call('ZREM', KEYS[4], name)
  listed = listed - 1
  return held
end
local lines = { epoch .. ' ' .. int(first) .. ' ' .. int(now) .. ' ' .. int(count) }
for i = 1, count do
  local history = KEYS[7 + 2 * i]
  local trimmed = KEYS[8 + 2 * i]
  local name = string.sub(history, #prefix + 3)
  local seq = first + i - 1
  local json = ARGV[11 + i]
  redis.call('XADD', history, epoch .. '-' .. int(seq), 't', int(now), 'e', json)
  listed = listed + redis.call('ZADD', KEYS[4], seq, name)
  local cost = #json + ENTRY_OVERHEAD
  local length = redis.call('XLEN', history)
  if length == 1 then
    -- A new stream (streams are never trimmed empty), or one whose keys
    -- expired: whatever the topic was counted at before is gone.
    cost = cost + TOPIC_OVERHEAD + #name - tonumber(redis.call('HGET', KEYS[5], name) or '0')
    if evicted_seq >= 0 then redis.call('SET', trimmed, epoch .. '-' .. int(evicted_seq)) end
  end
  local excess = length - size
  -- Over the count, plus two: expired entries go two per publish beyond
  -- the count, which outpaces the one each publish adds.
  local head = redis.call('XRANGE', history, '-', '+', 'COUNT', math.max(excess, 0) + 2)
  local dropped = nil
  for j, entry in ipairs(head) do
    if j <= excess or tonumber(entry[2][2]) < cutoff then
      dropped = entry[1]
      cost = cost - entry_cost(entry)
    else
      break
    end
  end
  if dropped then
    local e, s = string.match(dropped, '^(%d+)-(%d+)$')
    redis.call('XTRIM', history, 'MINID', e .. '-' .. int(tonumber(s) + 1))
    redis.call('SET', trimmed, dropped)
  end
  redis.call('PEXPIRE', history, lifetime)
  redis.call('PEXPIRE', trimmed, lifetime)
  redis.call('HINCRBY', KEYS[5], name, cost)
  total = total + cost
  while listed > max_topics do
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    for_topics = for_topics + drop_topic(oldest[1], tonumber(oldest[2]))
  end
  while total > max_bytes do
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    local victim = prefix .. 'h:' .. oldest[1]
    local held = redis.call('XLEN', victim)
    if held > 1 then
      -- Its oldest entries, never its newest (the one just appended): as
      -- many as the excess needs at the topic's mean entry size, so large
      -- entries are not read needlessly.
      local mean = math.max(tonumber(redis.call('HGET', KEYS[5], oldest[1]) or '0') / held, 1)
      local wanted = math.min(held - 1, math.ceil((total - max_bytes) / mean) + 1, 1000)
      local freed, last = 0, nil
      for _, entry in ipairs(redis.call('XRANGE', victim, '-', '+', 'COUNT', wanted)) do
        if total - freed <= max_bytes then break end
        freed = freed + entry_cost(entry)
        last = entry[1]
        for_bytes = for_bytes + 1
      end
      trim_through(victim, prefix .. 'm:' .. oldest[1], last)
      redis.call('HINCRBY', KEYS[5], oldest[1], -freed)
      total = total - freed
    elseif oldest[1] == name then
      break -- only the entry just appended is left
    else
      for_bytes = for_bytes + drop_topic(oldest[1], tonumber(oldest[2]))
    end
  end
  lines[#lines + 1] = json
end
redis.call('SET', KEYS[6], int(total))
if evicted_seq >= 0 then redis.call('SET', KEYS[7], epoch .. '-' .. int(evicted_seq)) end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local last_ms = -1
if #last > 0 then last_ms = tonumber(string.match(last[1][1], '^(%d+)')) end
if now - last_ms >= 1000 then
  redis.call('XADD', KEYS[3], int(now) .. '-0', 'e', epoch, 's', int(first + count - 1))
  redis.call('XTRIM', KEYS[3], 'MINID', int(now - tonumber(lifetime) - 60000))
end
redis.call('PUBLISH', ARGV[6], table.concat(lines, '\n'))
if fingerprint ~= '' then
  redis.call('SET', KEYS[8], fingerprint .. ' ' .. epoch .. ' ' .. int(first) .. ' ' .. int(count), 'PX', ARGV[11])
end
return { 'published', epoch, int(first), int(now), for_topics, for_bytes }
"#;

/// One page of the events of one topic after a seq. `KEYS`: epoch, seq,
/// clock, history, trim key, evicted. `ARGV`: after seq, ttl (ms), key lifetime
/// (ms), most entries, most bytes of JSON. Returns `{epoch, complete (1/0),
/// {id, ms, json, id, ms, json, ...}, next}`, or `{''}` when no epoch
/// exists yet. `next` is the seq to read on after when the page stopped at
/// a limit ('' when it holds everything): the last entry returned, or the
/// last one looked at when the page skipped expired entries. `XRANGE ...
/// COUNT` keeps each call short and its reply small, however long the
/// history; a page has at least one event when there is one.
///
/// Complete means nothing after the seq is lost: not trimmed (the trim key
/// is below it), not expired (entries past the ttl are dropped here too,
/// since trimming by age only happens on publish). A topic whose keys are
/// gone had its last publish more than the key lifetime ago: its events
/// are all older than that, so they are bounded by the first clock
/// checkpoint after that instant (the last seq when it was written) — or
/// the topic was evicted at a global bound, which the evicted key bounds.
const HISTORY_LUA: &str = r#"
local function int(n) return string.format('%d', n) end
local epoch = redis.call('GET', KEYS[1])
if not epoch then return { '' } end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local after = tonumber(ARGV[1])
local complete = 1
local out = {}
if redis.call('EXISTS', KEYS[4]) == 0 then
  local bound = tonumber(redis.call('GET', KEYS[2]) or '0')
  local marks = redis.call('XRANGE', KEYS[3], int(now - tonumber(ARGV[3])) .. '-0', '+', 'COUNT', 1)
  if #marks > 0 then
    if marks[1][2][2] == epoch then bound = tonumber(marks[1][2][4]) else bound = 0 end
  end
  local evicted = redis.call('GET', KEYS[6])
  if evicted then
    local e, s = string.match(evicted, '^(%d+)-(%d+)$')
    if e == epoch and tonumber(s) > bound then bound = tonumber(s) end
  end
  if after < bound then complete = 0 end
else
  local marker = redis.call('GET', KEYS[5])
  if marker then
    local e, s = string.match(marker, '^(%d+)-(%d+)$')
    if e == epoch and tonumber(s) > after then complete = 0 end
  end
  local cutoff = now - tonumber(ARGV[2])
  local most = tonumber(ARGV[4])
  local budget = tonumber(ARGV[5])
  local entries = redis.call('XRANGE', KEYS[4], '(' .. epoch .. '-' .. ARGV[1], '+', 'COUNT', most)
  local bytes = 0
  for i, entry in ipairs(entries) do
    if tonumber(entry[2][2]) < cutoff then
      complete = 0
    else
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2][2]
      out[#out + 1] = entry[2][4]
      bytes = bytes + #entry[2][4]
    end
    if bytes >= budget and i < #entries then
      return { epoch, complete, out, string.match(entry[1], '^%d+-(%d+)$') }
    end
  end
  if #entries == most then
    return { epoch, complete, out, string.match(entries[#entries][1], '^%d+-(%d+)$') }
  end
end
return { epoch, complete, out, '' }
"#;

/// Where ids stand now, starting an epoch if needed (see `EPOCH_LUA`).
/// `KEYS`: epoch, seq. Returns `{epoch, seq}`.
const SYNC_LUA: &str = r#"
return { epoch, int(seq) }
"#;

pub(super) struct Scripts {
    pub publish: Script,
    pub history: Script,
    pub sync: Script,
}

impl Scripts {
    pub fn new() -> Self {
        // `#!lua` (no flags): Redis refuses the whole script up front when
        // it is over `maxmemory`, rather than failing halfway through.
        Self {
            publish: Script::new(&format!("#!lua\n{EPOCH_LUA}{PUBLISH_LUA}")),
            history: Script::new(&format!("#!lua flags=no-writes\n{HISTORY_LUA}")),
            sync: Script::new(&format!("#!lua\n{EPOCH_LUA}{SYNC_LUA}")),
        }
    }
}
