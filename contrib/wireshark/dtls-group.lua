-- dtls-group.lua: a Wireshark dissector for dtls-group traffic (no decryption).
--
--   * group records (docs/wire-format.md §1): DTLS 1.2 records whose 48-bit sequence number is
--     split into an 8-bit sender ID and a 40-bit sequence number; the explicit nonce (AES
--     suites), checked against epoch || sender ID || seq (the strict profile); ciphertext; tag;
--     the ECDSA signature of signed groups;
--   * key-distribution messages (docs/key-distribution.md §2, §3): version, protection mode,
--     kind, and the postcard-encoded fields (group, device, counter, epoch, sender list, ...),
--     with the trailer (signature or PSK tag). The sealed key material stays sealed.
--
-- Use: copy into your personal plugins folder (Help > About > Folders), or
--   tshark -X lua_script:contrib/wireshark/dtls-group.lua \
--          -o dtlsgroup.record_ports:45001 -o dtlsgroup_kd.ports:45110 -r capture.pcap -V
-- The UDP ports are preferences (Edit > Preferences > Protocols > DTLSGROUP / DTLSGROUP_KD):
-- the group's multicast port(s) for records, the key server's `listen` port for key
-- distribution. Display filters: dtlsgroup.sender_id == 3, dtlsgroup.nonce_matches == 0,
-- dtlsgroup_kd.kind == 1, dtlsgroup_kd.sender == 4, ...

-------------------------------------------------------------------------------------------------
-- Group records

local rec = Proto("dtlsgroup", "DTLS Group Record")

local content_types = { [20] = "change_cipher_spec", [21] = "alert", [22] = "handshake",
                        [23] = "application_data" }

local rf = {
    content_type = ProtoField.uint8("dtlsgroup.content_type", "Content type", base.DEC, content_types),
    version      = ProtoField.uint16("dtlsgroup.version", "Version", base.HEX,
                                     { [0xfefd] = "DTLS 1.2" }),
    epoch        = ProtoField.uint16("dtlsgroup.epoch", "Epoch", base.DEC),
    sender_id    = ProtoField.uint8("dtlsgroup.sender_id", "Sender ID", base.DEC),
    seq          = ProtoField.uint64("dtlsgroup.seq", "Sequence number (40 bits)", base.DEC),
    length       = ProtoField.uint16("dtlsgroup.length", "Length", base.DEC),
    nonce        = ProtoField.bytes("dtlsgroup.nonce", "Explicit nonce"),
    nonce_matches = ProtoField.bool("dtlsgroup.nonce_matches",
                                    "Explicit nonce is epoch || sender ID || seq"),
    ciphertext   = ProtoField.bytes("dtlsgroup.ciphertext", "Ciphertext"),
    plaintext_len = ProtoField.uint16("dtlsgroup.plaintext_length", "Plaintext length", base.DEC),
    tag          = ProtoField.bytes("dtlsgroup.tag", "Authentication tag"),
    signature    = ProtoField.bytes("dtlsgroup.signature", "Signature (ECDSA P-256 r || s)"),
}
rec.fields = rf

local re = {
    nonce_mismatch = ProtoExpert.new("dtlsgroup.nonce_mismatch.expert",
        "Explicit nonce differs from epoch || sender ID || seq (dropped by strict receivers as nonce_mismatch; wolfSSL AES senders do this)",
        expert.group.SEQUENCE, expert.severity.WARN),
    truncated = ProtoExpert.new("dtlsgroup.truncated.expert",
        "Record length runs past the datagram (malformed)", expert.group.MALFORMED,
        expert.severity.ERROR),
    short = ProtoExpert.new("dtlsgroup.short.expert",
        "Fragment shorter than explicit nonce and tag", expert.group.MALFORMED,
        expert.severity.ERROR),
    epoch0 = ProtoExpert.new("dtlsgroup.epoch0.expert",
        "Epoch 0 carries no keys (receivers count it as unknown_epoch)", expert.group.PROTOCOL,
        expert.severity.NOTE),
}
rec.experts = { re.nonce_mismatch, re.truncated, re.short, re.epoch0 }

-- Suite: explicit nonce length, tag length.
local SUITES = { ccm8 = { 8, 8 }, ccm = { 8, 16 }, gcm = { 8, 16 }, chacha20 = { 0, 16 } }
local suite_enum = {
    { 1, "AES-128-CCM_8 (nonce 8, tag 8)", 1 },
    { 2, "AES-128-CCM (nonce 8, tag 16)", 2 },
    { 3, "AES-128-GCM (nonce 8, tag 16)", 3 },
    { 4, "ChaCha20-Poly1305 (no explicit nonce, tag 16)", 4 },
}
local suite_names = { "ccm8", "ccm", "gcm", "chacha20" }

rec.prefs.record_ports = Pref.range("Record UDP ports", "", "The group's multicast UDP port(s)", 65535)
rec.prefs.suite = Pref.enum("Suite", 2, "The group's cipher suite (sets the nonce and tag lengths)",
                            suite_enum, false)
rec.prefs.signed = Pref.bool("Signed records", false,
                             "The group requires record signatures (64-byte ECDSA trailer)")

local function dissect_record(tvb, off, pinfo, tree)
    local left = tvb:len() - off
    if left < 13 then
        local t = tree:add(rec, tvb(off, left), "DTLS group record (truncated header)")
        t:add_proto_expert_info(re.truncated)
        return tvb:len()
    end
    local len = tvb(off + 11, 2):uint()
    local total = 13 + len
    local avail = math.min(total, left)
    local t = tree:add(rec, tvb(off, avail))
    local ctype = tvb(off, 1):uint()
    local epoch = tvb(off + 3, 2):uint()
    local sid = tvb(off + 5, 1):uint()
    local seq = tvb(off + 6, 5):uint64()
    t:add(rf.content_type, tvb(off, 1))
    t:add(rf.version, tvb(off + 1, 2))
    local te = t:add(rf.epoch, tvb(off + 3, 2))
    if epoch == 0 then te:add_proto_expert_info(re.epoch0) end
    t:add(rf.sender_id, tvb(off + 5, 1))
    t:add(rf.seq, tvb(off + 6, 5), seq)
    t:add(rf.length, tvb(off + 11, 2))
    t:set_text(string.format("DTLS Group Record, %s, Epoch: %d, Sender ID: %d, Seq: %s, Length: %d",
        content_types[ctype] or tostring(ctype), epoch, sid, tostring(seq), len))
    if total > left then
        t:add_proto_expert_info(re.truncated)
        return tvb:len()
    end
    local sp = SUITES[suite_names[rec.prefs.suite]] or SUITES.ccm
    local nonce_len, tag_len = sp[1], sp[2]
    local sig_len = rec.prefs.signed and 64 or 0
    local frag = off + 13
    if len < nonce_len + tag_len + sig_len then
        t:add_proto_expert_info(re.short)
        return off + total
    end
    if nonce_len > 0 then
        local nonce = tvb(frag, nonce_len)
        t:add(rf.nonce, nonce)
        -- The strict profile: the explicit nonce is the header's epoch || sid || seq.
        local matches = nonce:bytes() == tvb(off + 3, 8):bytes()
        local tm = t:add(rf.nonce_matches, nonce, matches)
        tm:set_generated()
        if not matches then tm:add_proto_expert_info(re.nonce_mismatch) end
    end
    local ct_len = len - nonce_len - tag_len - sig_len
    if ct_len > 0 then
        t:add(rf.ciphertext, tvb(frag + nonce_len, ct_len))
    end
    local pl = t:add(rf.plaintext_len, tvb(frag + nonce_len, ct_len), ct_len)
    pl:set_generated()
    t:add(rf.tag, tvb(frag + nonce_len + ct_len, tag_len))
    if sig_len > 0 then
        t:add(rf.signature, tvb(frag + nonce_len + ct_len + tag_len, sig_len))
    end
    return off + total
end

function rec.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "DTLS-GROUP"
    local off, n, summary = 0, 0, {}
    while off < tvb:len() do
        local start = off
        off = dissect_record(tvb, off, pinfo, tree)
        n = n + 1
        if tvb:len() - start >= 13 then
            summary[#summary + 1] = string.format("e=%d sid=%d seq=%s",
                tvb(start + 3, 2):uint(), tvb(start + 5, 1):uint(),
                tostring(tvb(start + 6, 5):uint64()))
        end
        if off <= start then break end
    end
    pinfo.cols.info = "Group record " .. table.concat(summary, "; ")
    return tvb:len()
end

-------------------------------------------------------------------------------------------------
-- Key-distribution messages

local kd = Proto("dtlsgroup_kd", "DTLS Group Key Distribution")

local KINDS = { [0] = "JoinRequest", [1] = "KeyBundle", [2] = "Ack", [3] = "Leave",
                [4] = "RekeyNeeded", [5] = "Removed", [6] = "JoinChallenge",
                [7] = "SenderKeys" }
local MODES = { [1] = "signed", [2] = "psk" }
local ROLES = { [0] = "Listener", [1] = "Sender" }
local REKEY_REASONS = { [0] = "SenderBudget", [1] = "GroupUsage", [2] = "SequenceExhausted",
                        [3] = "IntegrityLimit", [4] = "Expired", [5] = "Requested" }
local REMOVED_REASONS = { [0] = "Left", [1] = "Revoked" }
local ADMISSION = { [0] = "TrustFirst", [1] = "Strict" }
local NONCE_PROFILE = { [0] = "Strict", [1] = "Compatibility" }
local SUITE_CODES = { [0xC0A8] = "AES-128-CCM_8", [0xC0A4] = "AES-128-CCM",
                      [0x00A8] = "AES-128-GCM", [0xCCAB] = "ChaCha20-Poly1305" }

local kf = {
    version   = ProtoField.uint8("dtlsgroup_kd.version", "Version", base.DEC),
    mode      = ProtoField.uint8("dtlsgroup_kd.mode", "Mode", base.DEC, MODES),
    kind      = ProtoField.uint8("dtlsgroup_kd.kind", "Kind", base.DEC, KINDS),
    group_id  = ProtoField.uint32("dtlsgroup_kd.group_id", "Group ID", base.DEC),
    device_id = ProtoField.uint32("dtlsgroup_kd.device_id", "Device ID", base.DEC),
    nonce     = ProtoField.bytes("dtlsgroup_kd.nonce", "Nonce"),
    counter   = ProtoField.uint64("dtlsgroup_kd.counter", "Counter", base.DEC),
    role      = ProtoField.uint8("dtlsgroup_kd.role", "Role", base.DEC, ROLES),
    public_key = ProtoField.bytes("dtlsgroup_kd.public_key", "Public key (SEC1)"),
    state_lost = ProtoField.bool("dtlsgroup_kd.sequence_state_lost", "Sequence state lost"),
    challenge = ProtoField.bytes("dtlsgroup_kd.challenge", "Challenge"),
    echo      = ProtoField.bytes("dtlsgroup_kd.echo", "Echo (join request nonce)"),
    epoch     = ProtoField.uint16("dtlsgroup_kd.epoch", "Epoch", base.DEC),
    suite     = ProtoField.uint16("dtlsgroup_kd.suite", "Suite", base.HEX, SUITE_CODES),
    sender_id = ProtoField.uint8("dtlsgroup_kd.sender_id", "Recipient's sender ID", base.DEC),
    replay_window = ProtoField.uint16("dtlsgroup_kd.replay_window", "Replay window", base.DEC),
    admission = ProtoField.uint8("dtlsgroup_kd.admission", "Admission", base.DEC, ADMISSION),
    nonce_profile = ProtoField.uint8("dtlsgroup_kd.nonce_profile", "Nonce profile", base.DEC,
                                     NONCE_PROFILE),
    signatures_required = ProtoField.bool("dtlsgroup_kd.signatures_required",
                                          "Signatures required"),
    grace_ms  = ProtoField.uint32("dtlsgroup_kd.grace_ms", "Grace (ms)", base.DEC),
    max_fragment_len = ProtoField.uint16("dtlsgroup_kd.max_fragment_len", "Max fragment length",
                                         base.DEC),
    activate_in_ms = ProtoField.uint32("dtlsgroup_kd.activate_in_ms", "Activate in (ms)", base.DEC),
    lifetime_ms = ProtoField.uint32("dtlsgroup_kd.lifetime_ms", "Lifetime (ms)", base.DEC),
    senders_count = ProtoField.uint8("dtlsgroup_kd.senders_count", "Senders", base.DEC),
    sender    = ProtoField.uint8("dtlsgroup_kd.sender", "Sender", base.DEC),
    sender_key = ProtoField.bytes("dtlsgroup_kd.sender_key", "Sender's record key (compressed SEC1)"),
    stale     = ProtoField.uint8("dtlsgroup_kd.stale", "Stale sender ID", base.DEC),
    ephemeral = ProtoField.bytes("dtlsgroup_kd.ephemeral", "Ephemeral key (compressed SEC1)"),
    sealed    = ProtoField.bytes("dtlsgroup_kd.sealed", "Sealed key material (ciphertext || tag)"),
    reason    = ProtoField.uint8("dtlsgroup_kd.reason", "Reason", base.DEC),
    trailer_sig = ProtoField.bytes("dtlsgroup_kd.signature", "Signature (ECDSA P-256 r || s)"),
    trailer_tag = ProtoField.bytes("dtlsgroup_kd.psk_tag", "PSK tag (AES-128-CCM)"),
}
kd.fields = kf

local ke = {
    malformed = ProtoExpert.new("dtlsgroup_kd.malformed.expert", "Body does not decode",
                                expert.group.MALFORMED, expert.severity.ERROR),
    version = ProtoExpert.new("dtlsgroup_kd.version.expert",
                              "Unsupported version (this format is 2)", expert.group.PROTOCOL,
                              expert.severity.WARN),
}
kd.experts = { ke.malformed, ke.version }

kd.prefs.ports = Pref.range("Key server UDP ports", "", "The key server's listen port(s)", 65535)

-- A cursor over the body: postcard varints, bytes, options, sequences. Every read checks the
-- bounds and raises "truncated" otherwise.
local Reader = {}
Reader.__index = Reader

local function reader(tvb, off, limit)
    return setmetatable({ tvb = tvb, off = off, limit = limit }, Reader)
end

function Reader:need(n)
    if self.off + n > self.limit then error("truncated", 0) end
end

-- Unsigned LEB128 (at most 10 bytes); returns the value (UInt64) and the range.
function Reader:varint()
    local start = self.off
    local v = UInt64(0)
    local shift = 0
    for _ = 1, 10 do
        self:need(1)
        local b = self.tvb(self.off, 1):uint()
        self.off = self.off + 1
        v = v + UInt64(b % 128):lshift(shift)
        if b < 128 then
            return v, self.tvb(start, self.off - start)
        end
        shift = shift + 7
    end
    error("varint too long", 0)
end

function Reader:u8()
    self:need(1)
    local r = self.tvb(self.off, 1)
    self.off = self.off + 1
    return r:uint(), r
end

function Reader:bytes(n)
    self:need(n)
    local r = self.tvb(self.off, n)
    self.off = self.off + n
    return r
end

function Reader:bool()
    local v, r = self:u8()
    if v > 1 then error("bad bool", 0) end
    return v == 1, r
end

-- Option<T>: returns present, and the tag's range.
function Reader:option()
    local v, r = self:u8()
    if v > 1 then error("bad option tag", 0) end
    return v == 1, r
end

local function num(v) return tonumber(tostring(v)) end

local function add_varint(t, field, rd)
    local v, r = rd:varint()
    if field == kf.counter then
        t:add(field, r, v)
    else
        t:add(field, r, num(v))
    end
    return v
end

local function device_header(t, rd, s)
    s.group = num(add_varint(t, kf.group_id, rd))
    s.device = num(add_varint(t, kf.device_id, rd))
    t:add(kf.nonce, rd:bytes(16))
    s.counter = tostring(add_varint(t, kf.counter, rd))
end

local function server_header(t, rd, s)
    s.group = num(add_varint(t, kf.group_id, rd))
    s.device = num(add_varint(t, kf.device_id, rd))
    s.counter = tostring(add_varint(t, kf.counter, rd))
end

local function opt_bytes(t, field, rd, n)
    local present, r = rd:option()
    if present then
        t:add(field, rd:bytes(n))
    end
    return present
end

local BODY = {}

BODY[0] = function(t, rd, s) -- JoinRequest
    device_header(t, rd, s)
    local role, r = rd:varint()
    t:add(kf.role, r, num(role))
    local n, lr = rd:varint()
    n = num(n)
    if n > 0 then t:add(kf.public_key, rd:bytes(n)) end
    local lost, br = rd:bool()
    t:add(kf.state_lost, br, lost)
    opt_bytes(t, kf.challenge, rd, 16)
    s.extra = string.format("role=%s%s", ROLES[num(role)] or "?", lost and " state_lost" or "")
end

BODY[1] = function(t, rd, s) -- KeyBundle
    server_header(t, rd, s)
    opt_bytes(t, kf.echo, rd, 16)
    s.epoch = num(add_varint(t, kf.epoch, rd))
    add_varint(t, kf.suite, rd)
    local has_sid, r = rd:option()
    if has_sid then
        local sid, sr = rd:u8()
        t:add(kf.sender_id, sr)
        s.sender_id = sid
    end
    local p = t:add(kd, rd.tvb(rd.off, 0), "Policy")
    add_varint(p, kf.replay_window, rd)
    add_varint(p, kf.admission, rd)
    add_varint(p, kf.nonce_profile, rd)
    local sig, br = rd:bool()
    p:add(kf.signatures_required, br, sig)
    add_varint(p, kf.grace_ms, rd)
    add_varint(p, kf.max_fragment_len, rd)
    add_varint(t, kf.activate_in_ms, rd)
    add_varint(t, kf.lifetime_ms, rd)
    local n, nr = rd:varint()
    n = num(n)
    t:add(kf.senders_count, nr, n)
    local list = {}
    for _ = 1, n do
        local sid, sr = rd:u8()
        local st = t:add(kf.sender, sr)
        opt_bytes(st, kf.sender_key, rd, 33)
        list[#list + 1] = tostring(sid)
    end
    s.senders = list
    local m = num((rd:varint()))
    for _ = 1, m do
        local _, sr = rd:u8()
        t:add(kf.stale, sr)
    end
    opt_bytes(t, kf.ephemeral, rd, 33)
    local c = num((rd:varint()))
    if c > 0 then t:add(kf.sealed, rd:bytes(c)) end
end

BODY[2] = function(t, rd, s) -- Ack
    device_header(t, rd, s)
    s.epoch = num(add_varint(t, kf.epoch, rd))
end

BODY[3] = function(t, rd, s) -- Leave
    device_header(t, rd, s)
end

BODY[4] = function(t, rd, s) -- RekeyNeeded
    device_header(t, rd, s)
    s.epoch = num(add_varint(t, kf.epoch, rd))
    local reason, r = rd:varint()
    t:add(kf.reason, r, num(reason)):append_text(" (" .. (REKEY_REASONS[num(reason)] or "?") .. ")")
    s.extra = "reason=" .. (REKEY_REASONS[num(reason)] or "?")
end

BODY[5] = function(t, rd, s) -- Removed
    server_header(t, rd, s)
    local reason, r = rd:varint()
    t:add(kf.reason, r, num(reason)):append_text(" (" .. (REMOVED_REASONS[num(reason)] or "?") .. ")")
    s.extra = "reason=" .. (REMOVED_REASONS[num(reason)] or "?")
end

BODY[6] = function(t, rd, s) -- JoinChallenge
    s.group = num(add_varint(t, kf.group_id, rd))
    s.device = num(add_varint(t, kf.device_id, rd))
    t:add(kf.echo, rd:bytes(16))
    t:add(kf.challenge, rd:bytes(16))
end

BODY[7] = function(t, rd, s) -- SenderKeys: keys of a bundle's entries first, first + 1, ...
    server_header(t, rd, s)
    s.epoch = num(add_varint(t, kf.epoch, rd))
    local bundle, br = rd:varint()
    t:add(kf.counter, br, num(bundle)):append_text(" (the bundle's counter)")
    local first, fr = rd:u8()
    t:add(kf.sender, fr):append_text(" (first entry index)")
    local n, nr = rd:varint()
    n = num(n)
    t:add(kf.senders_count, nr, n)
    for _ = 1, n do
        t:add(kf.sender_key, rd:bytes(33))
    end
    s.extra = "bundle=" .. tostring(num(bundle)) .. " first=" .. tostring(first) .. " keys=" .. tostring(n)
end

function kd.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "DTLS-GROUP-KD"
    local len = tvb:len()
    local t = tree:add(kd, tvb())
    if len < 3 then
        t:add_proto_expert_info(ke.malformed)
        return len
    end
    local version = tvb(0, 1):uint()
    local mode = tvb(1, 1):uint()
    local tv = t:add(kf.version, tvb(0, 1))
    t:add(kf.mode, tvb(1, 1))
    if version ~= 2 then tv:add_proto_expert_info(ke.version) end
    local trailer = (mode == 1 and 64) or (mode == 2 and 16) or 0
    local body_end = len - trailer
    local s = {}
    local kind_name = "?"
    local ok, err = pcall(function()
        local rd = reader(tvb, 2, body_end)
        local kind, kr = rd:varint()
        kind = num(kind)
        t:add(kf.kind, kr, kind)
        kind_name = KINDS[kind] or ("kind " .. kind)
        local body = BODY[kind]
        if not body then error("unknown kind", 0) end
        body(t, rd, s)
        if rd.off ~= body_end then error("trailing bytes", 0) end
    end)
    if not ok then
        t:add_proto_expert_info(ke.malformed, "Body does not decode: " .. tostring(err))
    end
    if trailer > 0 and body_end > 2 then
        t:add(mode == 1 and kf.trailer_sig or kf.trailer_tag, tvb(body_end, trailer))
    end
    local parts = { kind_name }
    if s.group then parts[#parts + 1] = "group=" .. s.group end
    if s.device then parts[#parts + 1] = "device=" .. s.device end
    if s.counter then parts[#parts + 1] = "counter=" .. s.counter end
    if s.epoch then parts[#parts + 1] = "epoch=" .. s.epoch end
    if s.sender_id then parts[#parts + 1] = "sid=" .. s.sender_id end
    if s.senders then parts[#parts + 1] = "senders=[" .. table.concat(s.senders, ",") .. "]" end
    if s.extra then parts[#parts + 1] = s.extra end
    local summary = table.concat(parts, " ")
    t:set_text("DTLS Group Key Distribution, " .. summary ..
               string.format(" (v%d, %s)", version, MODES[mode] or "mode ?"))
    pinfo.cols.info = summary
    return len
end

-------------------------------------------------------------------------------------------------
-- Registration on the configured ports

local udp = DissectorTable.get("udp.port")

local function register()
    udp:remove_all(rec)
    udp:remove_all(kd)
    local r = tostring(rec.prefs.record_ports)
    if r ~= "" then udp:add(r, rec) end
    local k = tostring(kd.prefs.ports)
    if k ~= "" then udp:add(k, kd) end
end

rec.prefs_changed = register
kd.prefs_changed = register
register()
