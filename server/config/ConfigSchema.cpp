#include "config/ConfigSchema.h"

#include "core/Duration.h"
#include "core/Text.h"
#include "core/Utf8.h"
#include "api/SizeText.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <stdexcept>

namespace postern::config {

namespace {

using K = ValueKind;

// name, default, kind, doc[, choices]. The default config file in etc/ mirrors this table.
const std::vector<KeyDef> Keys = {
    // --- server -------------------------------------------------------------------
    {"server.hostname", "", K::String, "Name in the greeting, EHLO reply and Received header (empty = system host name)"},
    {"server.mail_root", "var/mail", K::Path, "Root of the Maildir mailboxes (relative paths are taken from the working directory)"},
    {"server.queue_dir", "var/queue", K::Path, "Durable outbound queue directory (one per node)"},
    {"server.plugin_dir", "", K::Path, "Directory of postern-auth-*.so plugins (empty = the build tree's plugins/)"},
    {"server.drain_delay", "8s", K::Duration, "On SIGTERM/SIGINT while a balancer polls /readyz: answer it 503 and keep serving new clients this long before the listeners close (0 = close at once)"},
    {"server.shutdown_grace", "30s", K::Duration, "On SIGTERM/SIGINT: how long running sessions may take to finish"},
    {"server.user", "", K::String, "Unprivileged user to switch to after binding ports and reading secrets (empty = stay as started)"},
    {"server.group", "", K::String, "Group to switch to (empty = the user's primary group)"},
    {"server.allow_root", "false", K::Bool, "Allow serving clients as root (only for throw-away test setups)"},
    {"server.ready_file", "", K::Path, "If set, written after every listener is up (for tests and service managers)"},
    // --- outbound queue -------------------------------------------------------------
    {"queue.max_size", "2G", K::Size, "Total size of queued mail; beyond it new relay mail gets 452 4.3.1 (0 = no limit)"},
    {"queue.max_messages", "100000", K::Integer, "Number of queued messages; beyond it new relay mail gets 452 4.3.1 (0 = no limit)"},
    // --- mail store -----------------------------------------------------------------
    {"store.tmp_cleanup_age", "36h", K::Duration, "Files in a Maildir tmp/ older than this are removed when the mailbox is opened (0 = never)"},
    {"store.quota_cache_size", "100000", K::Integer, "Mailboxes whose quota usage is remembered between RCPTs (0 = count at every RCPT)"},
    {"store.dovecot_uidlist", "false", K::Bool, "Mailboxes migrated from Dovecot: a message listed in the mailbox's dovecot-uidlist keeps its Dovecot POP3 UIDL (the record's P field, else Dovecot's default %08Xu%08Xv), so clients that leave mail on the server do not fetch it all again"},
    // --- mail store: group commit ---------------------------------------------------
    {"store.group_commit", "true", K::Bool, "Concurrent local deliveries share the syncfs calls of the mail root's file system (two per batch: data, then the links into new/) instead of fsyncing each file and new/ (false = per message)"},
    // --- TLS ----------------------------------------------------------------------
    {"tls.cert_file", "", K::Path, "PEM certificate chain; empty = no TLS (STARTTLS/STLS not offered, implicit listeners refused)"},
    {"tls.key_file", "", K::Path, "PEM private key for tls.cert_file"},
    {"tls.ecdsa_cert_file", "", K::Path, "Optional second PEM chain with an ECDSA key, served to clients that support it (cheaper handshakes)"},
    {"tls.ecdsa_key_file", "", K::Path, "PEM private key for tls.ecdsa_cert_file"},
    {"tls.min_version", "1.2", K::Enum, "Lowest TLS version accepted", "1.2|1.3"},
    {"tls.ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
     K::String, "OpenSSL cipher list for TLS 1.2 (default: ECDHE key exchange with AEAD ciphers only)"},
    {"tls.ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256", K::String,
     "TLS 1.3 cipher suites (OpenSSL syntax)"},
    {"tls.groups", "X25519:P-256:P-384", K::String, "Key exchange groups (ECDHE curves), in order of preference"},
    {"tls.session_lifetime", "5m", K::Duration, "How long a TLS session can be resumed (session cache entries and tickets)"},
    {"tls.session_cache_size", "20480", K::Integer, "Sessions kept for resumption by session ID (0 = no cache)"},
    {"tls.ticket_key_rotation", "12h", K::Duration, "Session ticket keys are replaced this often (at most 24h); the previous key still decrypts for one more period (0 = no tickets)"},
    // --- listeners ----------------------------------------------------------------
    {"listeners", "", K::List, "Names of the listeners to start; each is configured under listener.<name>."},
    {"listener.*.address", "127.0.0.1", K::String, "IPv4 or IPv6 address to bind (0.0.0.0 or :: for all; :: beside an IPv4 listener of its port takes IPv6 only; localhost is 127.0.0.1; no other host name; not ::ffff:a.b.c.d, write a.b.c.d)"},
    {"listener.*.port", "0", K::Integer, "TCP port"},
    {"listener.*.protocol", "smtp", K::Enum, "Protocol spoken", "smtp|pop3"},
    {"listener.*.role", "mx", K::Enum, "SMTP role: mx (mail for local domains from anyone) or submission (AUTH required)", "mx|submission"},
    {"listener.*.tls", "none", K::Enum, "TLS mode: none, starttls (STARTTLS/STLS offered) or implicit (TLS from the first byte)", "none|starttls|implicit"},
    {"listener.*.max_threads", "256", K::Integer, "Session threads of this listener's own pool (concurrent sessions)"},
    {"listener.*.max_queued", "64", K::Integer, "Accepted connections waiting for a thread; beyond threads+queue new clients get 421 / -ERR [SYS/TEMP] (over TLS on implicit-TLS listeners, connections.tls_refusals at once)"},
    {"listener.*.idle_time", "60s", K::Duration, "How long an idle pool thread is kept"},
    {"listener.*.backlog", "1024", K::Integer, "Listen backlog: connections the kernel completes before posternd takes them (capped by net.core.somaxconn); beyond it new connections' SYNs are dropped"},
    {"listener.*.stack_size", "256K", K::Size, "Stack size of this listener's session threads (idle sessions cost mostly stack)"},
    {"listener.*.max_connections_per_ip", "0", K::Integer, "Concurrent sessions per client IP on this listener (0 = connections.max_per_ip)"},
    {"listener.*.connection_rate_per_ip", "0", K::Integer, "New sessions per client IP and minute on this listener (0 = connections.rate_per_ip)"},
    {"listener.*.proxy_protocol", "false", K::Bool, "Expect a HAProxy PROXY v1/v2 header from the trusted balancers in proxy_trusted"},
    {"listener.*.proxy_trusted", "", K::List, "Balancer networks allowed to send a PROXY header (required with proxy_protocol; empty trusts nobody)"},
    {"listener.*.proxy_tls_counts", "false", K::Bool, "A v2 header saying the balancer terminated TLS counts as TLS for the AUTH-only-after-TLS rule (SMTP AUTH, POP3 logins)"},
    // --- connection limits (abuse) -----------------------------------------------------
    {"connections.max_total", "10000", K::Integer, "Concurrent sessions over all listeners (421 4.7.0 beyond)"},
    {"connections.max_per_ip", "50", K::Integer, "Concurrent sessions per client IP and listener (421 4.7.0 beyond; 0 = no limit)"},
    {"connections.rate_per_ip", "0", K::Integer, "New sessions per client IP, listener and minute (421 4.7.0 beyond; 0 = no limit)"},
    {"connections.allow_networks", "", K::List, "Networks exempt from the per-IP connection limits"},
    {"connections.refusal_timeout", "5s", K::Duration, "How long a refused client may take to finish the TLS handshake (implicit-TLS listeners) and read the refusal; also how long a session cut at a deadline has to send its last reply"},
    {"connections.tls_refusals", "16", K::Integer, "Refused clients of one implicit-TLS listener told why over TLS at once; more are closed without a handshake (0 = never a handshake for a refusal)"},
    {"connections.ipv6_prefix", "64", K::Integer, "IPv6 clients are counted per prefix of this length"},
    {"server.proxy_timeout", "5s", K::Duration, "Wait for the PROXY header from a trusted balancer"},
    {"server.proxy_detect_wait", "250ms", K::Duration, "PROXY listeners: watch a connection from an untrusted source this long for a stray PROXY header before greeting"},
    // --- policy delegation (Postfix check_policy_service) ---------------------------------
    {"policy.service", "", K::String, "Policy server asked about every accepted recipient: inet:host:port or unix:/path (empty = off)"},
    {"policy.roles", "mx,submission", K::List, "Listener roles whose recipients are checked (mx, submission)"},
    {"policy.timeout", "10s", K::Duration, "Longest wait for one answer, host name lookup, connect and retries included; past it the default action applies"},
    {"policy.default_action", "451 4.3.5 Server configuration problem", K::String, "Action when the policy server is down, times out or answers nonsense (Postfix smtpd_policy_service_default_action)"},
    {"policy.max_idle", "300s", K::Duration, "An unused pooled connection is closed after this long"},
    {"policy.max_ttl", "1000s", K::Duration, "A connection is not reused past this age"},
    {"policy.request_limit", "0", K::Integer, "Requests per connection before it is closed (0 = no limit)"},
    {"policy.try_limit", "2", K::Integer, "Attempts per request when the connection fails (within policy.timeout)"},
    {"policy.pool_size", "8", K::Integer, "Idle connections kept open for reuse (busier moments open extra ones, closed after use)"},
    // --- milters (Sendmail milter protocol 6, as Postfix's smtpd_milters) -------------------
    {"milter.smtpd_milters", "", K::List, "Milters asked about every SMTP session, in order: inet:host:port or unix:/path (empty = none)"},
    {"listener.*.milters", "", K::List, "This listener's milters instead of milter.smtpd_milters (set, even empty, = override; 'none' = no milters)"},
    {"milter.connect_timeout", "30s", K::Duration, "Connecting to a milter (host name lookup included) and option negotiation (Postfix milter_connect_timeout)"},
    {"milter.command_timeout", "30s", K::Duration, "Answer to one SMTP-stage command: connect, HELO, MAIL, RCPT, DATA (milter_command_timeout)"},
    {"milter.content_timeout", "300s", K::Duration, "Answer to one header, body chunk or end of message (milter_content_timeout)"},
    {"milter.default_action", "tempfail", K::Enum, "What a milter that fails, times out or speaks nonsense means: tempfail (451 4.7.1), accept (skip it), reject (550 5.7.1)", "tempfail|accept|reject"},
    {"milter.protocol", "6", K::Integer, "Milter protocol version offered (2..6; Postfix milter_protocol)"},
    // --- health and metrics --------------------------------------------------------------
    {"health.address", "127.0.0.1", K::String, "Address of the HTTP endpoint for /healthz, /readyz and /metrics"},
    {"health.port", "0", K::Integer, "Port of the HTTP endpoint (0 = off)"},
    {"health.request_timeout", "1s", K::Duration, "Longest a client of the health endpoint may take to send its whole request head; then the connection is cut (slow clients cannot hold its two threads)"},
    {"health.ready_timeout", "2s", K::Duration, "Longest /readyz waits for the readiness check before answering 503 (probe timed out)"},
    // --- SMTP ---------------------------------------------------------------------
    {"smtp.max_message_size", "25M", K::Size, "Largest message accepted (SIZE, 552 5.3.4)"},
    {"smtp.max_recipients", "100", K::Integer, "Recipients per transaction (452 4.5.3 beyond)"},
    {"smtp.max_recipient_overshoot", "1000", K::Integer, "RCPT refused past smtp.max_recipients in one transaction before each also counts as an error (Postfix smtpd_recipient_overshoot_limit)"},
    {"smtp.max_command_length", "512", K::Integer, "Longest command line incl. CRLF (RFC 5321 4.5.3.1.4)"},
    {"smtp.max_line_length", "1000", K::Integer, "Longest message line incl. CRLF (RFC 5321 4.5.3.1.6), for DATA and for BDAT without BODY=BINARYMIME (RFC 3030 3)"},
    {"smtp.max_header_size", "1M", K::Size, "Largest header section of a message"},
    {"smtp.max_hops", "50", K::Integer, "Received header fields that make a message a mail loop: refused with 554 5.4.6 (RFC 5321 6.3; Postfix hopcount_limit)"},
    {"smtp.command_timeout", "5m", K::Duration, "Wait for the next command (RFC 5321 4.5.3.2.7: 5 minutes), for the whole command; also bounds each whole write of replies"},
    {"smtp.data_timeout", "10m", K::Duration, "Wait for the next chunk of message data (RFC 5321 4.5.3.2.5/6)"},
    {"smtp.min_data_rate", "500", K::Integer, "Message data (DATA, each BDAT chunk) must arrive within smtp.data_timeout plus one second per this many octets received (Postfix's smtpd_min_data_rate); 0 = smtp.data_timeout per read only"},
    {"smtp.allow_plaintext_auth", "false", K::Bool, "Offer and accept AUTH without TLS (off: 538 5.7.11 before STARTTLS)"},
    {"smtp.max_errors", "20", K::Integer, "Bad commands and refusals per session before 421 and disconnect (counted again from zero after each accepted message)"},
    {"smtp.max_junk_commands", "100", K::Integer, "NOOP, RSET, VRFY, HELP, HELO and EHLO per message before each also counts as an error (Postfix smtpd_junk_command_limit); 0 = no limit"},
    {"smtp.early_talker_wait", "0s", K::Duration, "MX role: wait this long before the greeting; a client that talks first is refused (0 = only data already sent)"},
    {"smtp.add_missing_headers", "true", K::Bool, "Submission: add Date and Message-ID when missing (RFC 6409 8)"},
    {"smtp.quota_full_tempfail", "false", K::Bool,
     "A recipient whose mailbox is at its quota: 452 4.2.2 (retry) instead of 552 5.2.2"},
    // --- postmaster and abuse addresses ---------------------------------------------
    {"smtp.postmaster_address", "", K::String, "Where postmaster@<local domain>, postmaster@<server.hostname> and <Postmaster> go when the user backend has no such account (empty = the domain's own mailbox <domain>/postmaster)"},
    {"smtp.abuse_address", "", K::String, "Where abuse@<local domain> goes when the user backend has no such account (empty = off)"},
    {"smtp.max_transactions_per_session", "1000", K::Integer, "Mail transactions (MAIL commands) per SMTP session, advertised as LIMITS MAILMAX (RFC 9422; 421 4.7.0 and disconnect beyond; 0 = no limit)"},
    // --- POP3 ---------------------------------------------------------------------
    {"pop3.allow_plaintext_auth", "false", K::Bool, "Allow USER/PASS and AUTH without TLS (off: -ERR [AUTH] with a hint to use STLS)"},
    {"pop3.idle_timeout", "10m", K::Duration, "Inactivity timeout (RFC 1939 3: at least 10 minutes), for the whole command; also bounds each whole write of a reply or of a block of a message"},
    {"pop3.login_timeout", "3m", K::Duration, "A client must have logged in this long after connecting, however active it is (Dovecot: 3 minutes); 0 = only pop3.idle_timeout"},
    {"pop3.dead_client_timeout", "2m", K::Duration, "A client whose connection died without a close is noticed after about this long (TCP keepalive; TCP_USER_TIMEOUT, which also ends a client that stopped reading for this long) and its maildrop lock released; 0 = only pop3.idle_timeout"},
    {"pop3.max_errors", "10", K::Integer, "Bad commands per session before disconnect"},
    // --- POP-before-SMTP ------------------------------------------------------------
    {"pop_before_smtp.lifetime", "600s", K::Duration, "How long a POP3 login lets the client IP relay (0 = feature off)"},
    {"pop_before_smtp.own_senders_only", "true", K::Bool, "Relay on a grant only with a MAIL FROM of the user who earned it (subscribers sharing one NAT address cannot ride on each other's grants)"},
    {"pop_before_smtp.ipv6_prefix", "128", K::Integer, "IPv6 grants cover this prefix length (128 = exact address)"},
    {"pop_before_smtp.exclude_networks", "", K::List, "Client networks that never earn or relay on a grant (a webmail or other server polling POP3 for many users); nor does a connection without a PROXY header from a balancer named in listener.*.proxy_trusted"},
    // --- cluster (shared state in PostgreSQL) ----------------------------------------------
    {"cluster.conninfo", "", K::String, "libpq conninfo of the shared PostgreSQL (empty = single node: grants, locks and counters in memory)"},
    {"cluster.password_file", "", K::Path, "File holding the PostgreSQL password (must not be group/world-readable)"},
    {"cluster.pool_size", "8", K::Integer, "Connections to the shared PostgreSQL"},
    {"cluster.connect_timeout", "3s", K::Duration, "Connect timeout to the shared PostgreSQL"},
    {"cluster.statement_timeout", "3s", K::Duration, "Statement timeout on the shared PostgreSQL"},
    {"cluster.node_id", "", K::String, "This node's name in maildrop leases (empty = server.hostname + pid) and in the Maildir file names it writes (empty = the machine's host name)"},
    {"cluster.grant_cache_ttl", "5s", K::Duration, "How long a node may answer a grant lookup from memory (bounded staleness; 0 = always ask)"},
    {"cluster.grant_retry_queue", "10000", K::Integer, "Grants a node holds (and honours) while the shared PostgreSQL cannot store them, written through when it is back (0 = none: such a grant is lost)"},
    {"cluster.grant_retry_backoff_max", "30s", K::Duration, "Longest wait between attempts to write held grants through (from 1s, doubling; at once when PostgreSQL answers again)"},
    {"cluster.lock_lease", "60s", K::Duration, "POP3 maildrop lease; a crashed node's mailboxes are free again after at most this long"},
    {"cluster.sweep_interval", "60s", K::Duration, "How often expired grants and counters, and leases lapsed for over a lock_lease, are deleted (safe on every node at once)"},
    // --- cluster: read replicas ------------------------------------------------------
    {"cluster.read_conninfo", "", K::String, "libpq conninfo of streaming replicas for grant lookups (e.g. target_session_attrs=prefer-standby; empty = every read on cluster.conninfo)"},
    {"cluster.replica_max_lag", "1s", K::Duration, "Replay lag a replica may have and still answer; a grant it does not have is re-asked on the primary while it lags more"},
    // --- auth ---------------------------------------------------------------------
    {"auth.backends", "local", K::List, "Backend instances in the order they are asked; each is configured under auth.backend.<name>."},
    {"auth.backend.*.plugin", "passwd-file", K::String, "Plugin providing this backend: loads postern-auth-<plugin>.so"},
    {"auth.backend.*.domains", "*", K::List, "Domains this backend is authoritative for (* = any)"},
    {"auth.cache.size", "100000", K::Integer, "Entries in the authentication cache (0 = no cache)"},
    {"auth.cache.ttl", "300s", K::Duration, "How long a successful login is answered from the cache (bounded staleness of password/disable changes)"},
    {"auth.cache.negative_ttl", "60s", K::Duration, "How long the same failed user+password is answered from the cache (also after it became the right one: bounded staleness of a password change)"},
    {"auth.penalty.window", "15m", K::Duration, "Failed logins are counted within this window from the first one; a block lasts until a whole window passes without failures"},
    {"auth.penalty.max_failures_ip", "100", K::Integer, "Failures from one client IP before further logins are refused (454 4.7.0 / -ERR [SYS/TEMP]; 0 = never)"},
    {"auth.penalty.max_failures_account", "20", K::Integer, "Failures for one account before further logins are refused (0 = never)"},
    {"auth.penalty.base_delay", "1s", K::Duration, "Delay before answering after the first failure; doubles per failure (0 = no tarpit)"},
    {"auth.penalty.max_delay", "8s", K::Duration, "Longest tarpit delay"},
    {"auth.penalty.allow_networks", "", K::List, "Networks exempt from the per-IP failed-login counter and the tarpit; their failures still count against the account (and block it)"},
    {"auth.penalty.ipv6_prefix", "64", K::Integer, "IPv6 clients are counted per prefix of this length"},
    {"auth.penalty.known_address_failures", "5", K::Integer, "While an account is blocked, an address it logged in from successfully (account_security's IPs and login log, under the name the client logs in with) may still log in, until it has this many failures for the account in the window, and all such addresses together max_failures_account (0 = the block holds for every address)"},
    {"auth.penalty.parallel_wait", "10s", K::Duration, "Longest wait of a login for the other logins of its IP or account in progress when together they could pass a max_failures limit; then a temporary failure"},
    {"limits.user.messages_per_hour", "200", K::Integer, "Messages an authenticated user (or the user of a POP-before-SMTP grant) may send per hour (450 4.7.1 beyond; 0 = no limit)"},
    {"limits.user.recipients_per_hour", "1000", K::Integer, "Recipients per user and hour (452 4.7.1 beyond; 0 = no limit)"},
    {"limits.user.messages_per_day", "1000", K::Integer, "Messages per user and day (0 = no limit)"},
    {"limits.user.recipients_per_day", "5000", K::Integer, "Recipients per user and day (0 = no limit)"},
    {"limits.ip.messages_per_hour", "0", K::Integer, "Messages sent by authenticated or granted clients per client IP and hour (0 = no limit)"},
    {"limits.ip.recipients_per_hour", "0", K::Integer, "Outbound recipients per client IP and hour (0 = no limit)"},
    {"limits.ip.messages_per_day", "0", K::Integer, "Messages per client IP and day (0 = no limit)"},
    {"limits.ip.recipients_per_day", "0", K::Integer, "Outbound recipients per client IP and day (0 = no limit)"},
    {"limits.allow_networks", "", K::List, "Networks exempt from the per-IP outbound limits (user limits still apply)"},
    {"limits.ipv6_prefix", "64", K::Integer, "IPv6 clients are counted per prefix of this length"},
    // --- compromised-account detection and login log (server/abuse AccountSecurity) ------
    {"account_security.enabled", "true", K::Bool, "Hold an account's outbound mail (queued, not sent; MAIL gets 451 4.7.1) when its activity passes a threshold below, until posternctl user release"},
    {"account_security.flush_interval", "5s", K::Duration, "Events are recorded in memory and written (cluster: one multi-row statement) this often; also the detection latency"},
    {"account_security.state_write_interval", "1m", K::Duration, "A single node rewrites its state file (counters and the login log of every account) at most this often; flags and holds go to a small file of their own at once (0 = at every flush)"},
    {"account_security.window", "1h", K::Duration, "The thresholds count over this sliding window"},
    {"account_security.max_ips", "20", K::Integer, "Distinct client IPs with a successful login per account and window before it is held (0 = off)"},
    {"account_security.max_networks", "10", K::Integer, "Distinct networks (IPv4 /24, IPv6 /48) among those IPs before the account is held (0 = off)"},
    {"account_security.max_remote_rejected", "50", K::Integer, "Recipients of the account's mail refused by remote servers (5xx) per window before it is held (0 = off)"},
    {"account_security.max_bounces", "30", K::Integer, "Bounces generated for the account's mail per window before it is held (0 = off)"},
    {"account_security.login_log_max_entries", "100", K::Integer, "Login log entries kept per account: this many successful logins and this many other attempts (posternctl user logins; 0 = no login log)"},
    {"account_security.login_log_max_age", "30d", K::Duration, "Login log entries older than this are deleted"},
    {"account_security.max_pending", "100000", K::Integer, "Login log entries kept in memory while the store (state file or shared PostgreSQL) cannot take them; past it more are dropped (metric postern_login_log_entries_dropped)"},
    {"account_security.max_tracked_accounts", "100000", K::Integer, "Accounts with a login log at most; past it the least recently active lose their login log first (never a flag or hold)"},
    {"auth.default_scheme", "ARGON2ID", K::Enum, "Scheme for new password hashes (posternctl user add/passwd and app-password add, and posternd's rehash on login)", "ARGON2ID|BCRYPT|SHA512-CRYPT"},
    // --- app passwords -----------------------------------------------------------------
    {"auth.max_parallel_hashes", "16", K::Integer, "Password hash checks running at once (each Argon2id check holds its m=, 19-64 MiB); more wait (0 = no bound)"},
    {"auth.hash_wait_timeout", "5s", K::Duration, "Longest wait of a login for a free hash check; then a temporary failure (454 4.7.0 / -ERR [SYS/TEMP]), not counted as a failed login"},
    {"auth.app_password_last_used_interval", "15m", K::Duration, "An app password's last use (time, IP) is written to the backend at most this often, or when the client IP changes (0 = every login)"},
    // --- rehash on login (issue 13.2) ---------------------------------------------------
    {"auth.rehash_on_login", "true", K::Bool, "After a successful login with a hash in another scheme than auth.default_scheme, store a new hash in that scheme (backends that can write: passwd-file, postgres)"},
    {"auth.backend.*.rehash_on_login", "auto", K::Enum, "Rehash on login for this backend: auto (auth.rehash_on_login; always off for ldap), true or false", "auto|true|false"},
    {"auth.rehash_queue", "1000", K::Integer, "Rehashes waiting for the background thread; beyond it a login's rehash is skipped (the next login tries again)"},
    // --- outbound delivery (server/delivery) -----------------------------------------
    {"delivery.enabled", "true", K::Bool, "Deliver queued mail to other servers (false: mail waits in the queue, nothing is sent)"},
    {"delivery.max_workers", "16", K::Integer, "Delivery threads (concurrent outbound transactions, all destinations)"},
    {"delivery.max_per_domain", "4", K::Integer, "Concurrent deliveries to one recipient domain"},
    {"delivery.mx_session_limit", "2", K::Integer, "Sessions that carry the message per route and attempt: recipients one fails temporarily go to the next address or MX host until this many tried (Postfix smtp_mx_session_limit)"},
    {"delivery.mx_address_limit", "10", K::Integer, "Addresses tried per route and attempt, all MX hosts together (Postfix smtp_mx_address_limit)"},
    {"delivery.retry_schedule", "1m, 5m, 15m, 30m, 1h, 2h, 4h", K::List, "Wait after the 1st, 2nd, ... temporary failure; the last repeats"},
    {"delivery.max_lifetime", "5d", K::Duration, "Give up (bounce, Status 4.4.7) on recipients still failing temporarily after this long in the queue"},
    {"delivery.delay_warning", "0", K::Duration, "Send one 'delayed' DSN to the sender after this long in the queue (0 = never)"},
    {"delivery.bounce_size_limit", "50000", K::Size, "Largest original a delivery report returns whole for RET=FULL; a larger one gets its header section only (Postfix bounce_size_limit)"},
    {"delivery.scan_interval", "30s", K::Duration, "How often the queue directory is rescanned (picks up posternctl flush/hold/release/delete)"},
    {"delivery.dns_server", "", K::String, "Resolver for MX/A/AAAA lookups as IPv4 address:port (empty = /etc/resolv.conf)"},
    {"delivery.dns_timeout", "5s", K::Duration, "Wait per DNS query try (two tries per server)"},
    {"delivery.smtp_port", "25", K::Integer, "TCP port of MX hosts (tests use an unprivileged port)"},
    {"delivery.relayhost", "", K::String, "Smarthost host:port for all remote mail (empty = direct MX delivery)"},
    {"delivery.relayhost_tls", "encrypt", K::Enum, "TLS policy towards the smarthost", "none|may|encrypt|verify|dane|dane-only"},
    {"delivery.relayhost_auth_file", "", K::Path, "user:password file for AUTH at the smarthost (must not be group/world-readable)"},
    {"delivery.transport.*", "", K::String, "Per-domain next hop host:port instead of the MX lookup (key: delivery.transport.<domain>)"},
    {"delivery.tls_policy", "may", K::Enum, "Default TLS policy: none, may (STARTTLS when offered), encrypt (TLS required), verify (TLS + certificate and host name checked), dane / dane-only (RFC 7672, see the DANE section)", "none|may|encrypt|verify|dane|dane-only"},
    {"delivery.tls_policy.*", "may", K::Enum, "Per-domain TLS policy (key: delivery.tls_policy.<domain>)", "none|may|encrypt|verify|dane|dane-only"},
    {"delivery.tls_ca_file", "", K::Path, "CA bundle for the verify policy (empty = the system's default CA store)"},
    {"delivery.connect_timeout", "30s", K::Duration, "TCP connect to a remote SMTP server"},
    {"delivery.greeting_timeout", "5m", K::Duration, "Wait for the 220 greeting (RFC 5321 4.5.3.2.1)"},
    {"delivery.mail_timeout", "5m", K::Duration, "Wait for replies to EHLO/STARTTLS/AUTH/MAIL/RSET (RFC 5321 4.5.3.2.2)"},
    {"delivery.rcpt_timeout", "5m", K::Duration, "Wait for a RCPT reply (RFC 5321 4.5.3.2.3)"},
    {"delivery.data_timeout", "2m", K::Duration, "Wait for the 354 reply to DATA (RFC 5321 4.5.3.2.4)"},
    {"delivery.data_block_timeout", "3m", K::Duration, "Sending one block of message data (RFC 5321 4.5.3.2.5)"},
    {"delivery.data_done_timeout", "10m", K::Duration, "Wait for the reply to the final dot (RFC 5321 4.5.3.2.6)"},
    {"delivery.mime_output_conversion", "true", K::Bool, "To a next hop that does not offer 8BITMIME, send MIME parts declared 8bit or binary as quoted-printable (RFC 6152 3; Postfix: disable_mime_output_conversion = no); DKIM- or ARC-signed messages go unchanged. false: send them as they are"},
    // --- outbound connection cache (server/delivery/ConnectionPool) ------------------------
    {"delivery.connection_cache_time_limit", "2s", K::Duration, "How long an idle outbound SMTP connection is kept for the next message to the same next hop, shared by all workers (0 = off: QUIT after each message; Postfix smtp_connection_cache_time_limit)"},
    {"delivery.connection_reuse_time_limit", "300s", K::Duration, "A connection older than this (since it was opened) is not used for another message (Postfix smtp_connection_reuse_time_limit)"},
    // --- MTA-STS (RFC 8461) -------------------------------------------------------------
    {"delivery.mta_sts", "on", K::Bool, "Apply the MTA-STS policies of recipient domains to MX delivery (enforce: only the policy's MX hosts, verified TLS, else deferred)"},
    {"delivery.mta_sts.fetch_timeout", "10s", K::Duration, "Whole HTTPS fetch of one policy (connect, TLS, request, body)"},
    {"delivery.mta_sts.max_policy_size", "64K", K::Size, "Largest policy body accepted (larger = failed fetch)"},
    {"delivery.mta_sts.ca_file", "", K::Path, "CA bundle for the policy servers' certificates (empty = the system's default CA store)"},
    {"delivery.mta_sts.refresh_interval", "1d", K::Duration, "A cached policy whose TXT id has not changed is fetched again after this long, before it expires (RFC 8461 10.2; a failed refresh keeps it; 0 = only when the id changes)"},
    {"delivery.mta_sts.fetch_retry", "5m", K::Duration, "After a failed fetch, the same policy id is not fetched again for this long (meanwhile: the cached policy, or none)"},
    {"delivery.mta_sts.https_port", "443", K::Integer, "TCP port of the policy servers (tests use an unprivileged port)"},
    {"delivery.mta_sts.cache_file", "", K::Path, "Fetched policies, kept until max_age ends across restarts (empty = mta-sts.cache in server.queue_dir)"},
    // --- DKIM signing (RFC 6376, RFC 8463) --------------------------------------------
    {"dkim.key_dir", "", K::Path, "DKIM private keys as <domain>/<selector>.key (posternctl dkim keygen; must not be world-readable; empty = no key files). Mail from authenticated users and grant holders is signed with every key of its From domain"},
    {"dkim.keys_in_database", "false", K::Bool, "Also sign with the keys in the shared PostgreSQL (table dkim_keys, posternctl dkim keygen --db), so every cluster node signs alike; needs cluster.conninfo"},
};

bool matchesPattern(std::string_view pattern, std::string_view key) {
    auto star = pattern.find('*');
    if (star == std::string_view::npos) return pattern == key;
    // A trailing ".*" stands for a domain name ("delivery.transport.example.com"): dots allowed.
    if (star + 1 == pattern.size() && star > 0 && pattern[star - 1] == '.')
        return key.size() > star && key.substr(0, star) == pattern.substr(0, star);
    auto prefix = pattern.substr(0, star);
    auto suffix = pattern.substr(star + 1);
    if (key.size() <= prefix.size() + suffix.size()) return false;
    if (key.substr(0, prefix.size()) != prefix) return false;
    if (key.substr(key.size() - suffix.size()) != suffix) return false;
    auto middle = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
    return middle.find('.') == std::string_view::npos;  // "*" is one name, no dots
}

// Splits "300s" into 300 and "s".
std::pair<unsigned long long, std::string> splitNumber(const std::string& text) {
    std::string t(core::trimBlanks(text));
    std::size_t i = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    if (i == 0) throw std::invalid_argument("expected a number, got '" + text + "'");
    unsigned long long n = 0;
    for (std::size_t j = 0; j < i; ++j) {
        unsigned d = static_cast<unsigned>(t[j] - '0');
        if (n > (std::numeric_limits<unsigned long long>::max() - d) / 10)
            throw std::invalid_argument("number too large: '" + text + "'");
        n = n * 10 + d;
    }
    return {n, core::asciiLower(core::trimBlanks(std::string_view(t).substr(i)))};
}

}  // namespace

const std::vector<KeyDef>& keyTable() { return Keys; }

const KeyDef* findKey(std::string_view key) {
    for (const auto& k : Keys)
        if (matchesPattern(k.name, key)) return &k;
    return nullptr;
}

unsigned long long parseSize(const std::string& text) {
    plugins::api::SizeError why{};
    auto n = plugins::api::parseSizeText(text, &why);
    if (n) return *n;
    switch (why) {
    case plugins::api::SizeError::BadUnit:
        throw std::invalid_argument("bad size unit in '" + text + "' (use K, M or G)");
    case plugins::api::SizeError::TooLarge: throw std::invalid_argument("size too large: '" + text + "'");
    default: throw std::invalid_argument("expected a number, got '" + text + "'");
    }
}

bool parseBool(const std::string& text) {
    std::string t = core::asciiLower(core::trimBlanks(text));
    if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
    if (t == "false" || t == "no" || t == "off" || t == "0") return false;
    throw std::invalid_argument("expected true or false, got '" + text + "'");
}

std::vector<std::string> parseList(const std::string& text) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : text) {
        if (c == ',' || c == ' ' || c == '\t') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

std::string validateValue(const KeyDef& def, const std::string& value) {
    try {
        switch (def.kind) {
        case K::Bool: parseBool(value); break;
        case K::Integer: {
            auto [n, unit] = splitNumber(value);
            if (!unit.empty()) return "expected a plain integer, got '" + value + "'";
            if (n > static_cast<unsigned long long>(std::numeric_limits<int>::max())) return "integer too large";
            break;
        }
        case K::Duration: core::parseDuration(value); break;
        case K::Size: parseSize(value); break;
        case K::Enum: {
            std::string v(core::trimBlanks(value));
            std::string_view choices = def.choices;
            std::size_t start = 0;
            while (start <= choices.size()) {
                auto end = choices.find('|', start);
                if (end == std::string_view::npos) end = choices.size();
                if (choices.substr(start, end - start) == v) return "";
                start = end + 1;
            }
            return "expected one of " + std::string(choices) + ", got '" + value + "'";
        }
        case K::String:
        case K::List:
        case K::Path: break;
        }
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace postern::config
