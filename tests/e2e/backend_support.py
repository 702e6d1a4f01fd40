"""Client helpers shared by the authentication-backend tests (LDAP, PostgreSQL, their fault
tests): one SMTP AUTH, one POP3 login, one RCPT, each answering what the server said."""
import contextlib
import poplib

from postern_harness import expect, plain_ir


def smtp_auth(p, user, password):
    """(code, text) of AUTH PLAIN on the submission listener after STARTTLS."""
    s = p.smtp("submission", starttls=True)
    try:
        code, msg = s.docmd("AUTH", "PLAIN " + plain_ir(user, password))
        return code, msg.decode("utf-8", "replace")
    finally:
        with contextlib.suppress(Exception):  # the server may have closed after a failure
            s.quit()


def pop_login(p, user, password):
    """'+OK...' or the -ERR line of a POP3S USER/PASS login."""
    c = p.pop3_ssl()
    try:
        c.user(user)
        resp = c.pass_(password).decode("utf-8", "replace")
        with contextlib.suppress(Exception):
            c.quit()
        return resp
    except poplib.error_proto as e:
        return e.args[0].decode("utf-8", "replace") if isinstance(e.args[0], bytes) else str(e)
    finally:
        with contextlib.suppress(Exception):
            c.close()


def rcpt(p, address, sender="someone@remote.example"):
    """(code, text) of RCPT TO:<address> on the MX listener."""
    s = p.smtp("mx")
    try:
        expect(s.docmd("MAIL", "FROM:<%s>" % sender), 250)
        code, msg = s.docmd("RCPT", "TO:<%s>" % address)
        return code, msg.decode("utf-8", "replace")
    finally:
        with contextlib.suppress(Exception):
            s.quit()
