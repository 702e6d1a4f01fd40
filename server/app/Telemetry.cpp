#include "app/Telemetry.h"

namespace postern::app {

Telemetry::Telemetry()
    : connections_(registry_.counterFamily("postern_connections_total", "Accepted TCP connections per listener",
                                           {"listener"})),
      refused_(registry_.counterFamily("postern_connections_refused_total",
                                       "Connections refused before a session started", {"listener", "reason"})),
      sessionSeconds_(registry_.histogramFamily("postern_session_duration_seconds", "Session length by protocol",
                                                {"svc"}, metrics::defaultLatencyBuckets())),
      smtpMessages_(registry_.counterFamily("postern_smtp_messages_accepted_total",
                                            "Messages accepted (250 after DATA) by listener role", {"role"})),
      smtpRejects_(registry_.counterFamily("postern_smtp_rejects_total", "SMTP refusals by reason", {"reason"})),
      grants_(registry_.counterFamily("postern_grants_total", "POP-before-SMTP grants created, used, expired, queued (held through a PostgreSQL outage), written_through and dropped_*",
                                      {"event"})),
      pop3_(registry_.counterFamily("postern_pop3_events_total", "POP3 logins and deletions", {"event"})),
      other_(registry_.counterFamily("postern_events_total", "Other operator events", {"event", "label"})),
      authResults_(registry_.counterFamily("postern_auth_results_total", "Login attempts by service, backend and result",
                                           {"service", "backend", "result"})),
      authSeconds_(registry_.histogramFamily("postern_auth_duration_seconds", "Time to answer a login", {"service"},
                                             metrics::defaultLatencyBuckets())) {}

void Telemetry::count(std::string_view event, std::string_view label) {
    if (event == "smtp_message") smtpMessages_.labels({label}).inc();
    else if (event == "smtp_reject") smtpRejects_.labels({label}).inc();
    else if (event == "grant") grants_.labels({label}).inc();
    else if (event == "pop3") pop3_.labels({label}).inc();
    else other_.labels({event, label}).inc();
}

void Telemetry::observe(std::string_view what, double seconds) { sessionSeconds_.labels({what}).observe(seconds); }

}  // namespace postern::app
