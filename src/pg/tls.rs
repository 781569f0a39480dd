//! TLS as libpq's `sslmode` and `sslrootcert` mean it, over rustls (no OpenSSL). tokio-postgres
//! reads only `sslmode=disable|prefer|require` and checks nothing itself, so both settings are
//! taken out of the connection string here ([`split`]), the driver is told whether to use TLS
//! ([`Tls::driver_mode`]), and rustls is given the verifier the mode asks for ([`Tls::connector`]):
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA and issued for the host name |
//!
//! As in libpq, `prefer` and `require` with an explicit `sslrootcert` file check the chain as
//! `verify-ca` does, and `sslrootcert=system` demands `verify-full` (its default then).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// libpq tries without TLS first, then with; tokio-postgres can only try in the other
    /// order, which reaches the same servers.
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

const MODES: [(&str, SslMode); 6] = [
    ("disable", SslMode::Disable),
    ("allow", SslMode::Allow),
    ("prefer", SslMode::Prefer),
    ("require", SslMode::Require),
    ("verify-ca", SslMode::VerifyCa),
    ("verify-full", SslMode::VerifyFull),
];

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = MODES.iter().find(|(_, mode)| mode == self).map_or("", |(name, _)| name);
        f.write_str(name)
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// `sslrootcert` unset: the Mozilla roots (webpki-roots). libpq would read
    /// ~/.postgresql/root.crt; an embedded store reads no file it was not given.
    Mozilla,
    /// `sslrootcert=system`: the platform's store.
    System,
    /// `sslrootcert=<file>`: the PEM certificates in that file.
    File(String),
}

/// What a connection string asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    pub root_cert: RootCert,
}

/// What rustls checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing but that the server holds the certificate's key (the handshake signatures).
    Possession,
    /// The chain up to a trusted CA, whatever host name the certificate names.
    Chain,
    /// The chain and the host name.
    Full,
}

impl Tls {
    /// What tokio-postgres is told: whether TLS is tried, and whether it is required.
    pub fn driver_mode(&self) -> DriverMode {
        match self.mode {
            SslMode::Disable => DriverMode::Disable,
            SslMode::Allow | SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        }
    }

    fn check(&self) -> Check {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Check::Full,
            (SslMode::VerifyCa, _) | (_, RootCert::File(_)) => Check::Chain,
            _ => Check::Possession,
        }
    }

    /// rustls set up for this mode; reads the `sslrootcert` file (or the platform's store) now,
    /// so that a wrong one fails the open rather than each connection.
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| Error::Connection { message: format!("cannot set up TLS: {err}"), pg_code: None })?;
        let config = match self.check() {
            Check::Full => builder.with_root_certificates(self.roots()?),
            check => {
                let roots = if check == Check::Chain { Some(Arc::new(self.roots()?)) } else { None };
                builder.dangerous().with_custom_certificate_verifier(Arc::new(Verifier { roots, algorithms }))
            }
        };
        Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            RootCert::Mozilla => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            RootCert::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.first().map_or_else(|| "none found".to_string(), ToString::to_string);
                    return Err(Error::Connection {
                        message: format!("sslrootcert=system: the platform has no usable CA certificates ({why})"),
                        pg_code: None,
                    });
                }
            }
            RootCert::File(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|err| Error::InvalidOption(format!("sslrootcert {path:?} cannot be read: {err}")))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::InvalidOption(format!(
                        "sslrootcert {path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                    )));
                }
            }
        }
        Ok(roots)
    }

    /// Why connecting failed, when TLS is the reason: the server has none and this mode requires
    /// it, or its certificate was refused. `None` for any other failure.
    pub fn refusal(&self, err: &tokio_postgres::Error) -> Option<String> {
        let source = std::error::Error::source(err)?;
        let mode = self.mode;
        if let Some(tls) =
            source.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
        {
            let what = match tls {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => "the server's certificate is not issued for the host name connected to".to_string(),
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    format!("the server's certificate is not signed by a trusted CA ({})", self.root_cert)
                }
                rustls::Error::InvalidCertificate(_) => "the server's certificate was refused".to_string(),
                _ => "the TLS handshake failed".to_string(),
            };
            return Some(format!("TLS refused (sslmode={mode}): {what}: {tls}"));
        }
        // tokio-postgres's own refusal, with no finer type than its text.
        source.to_string().contains("does not support TLS").then(|| {
            format!("TLS refused (sslmode={mode}): the server does not support TLS, which sslmode={mode} requires")
        })
    }
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCert::Mozilla => f.write_str("the Mozilla roots; set sslrootcert to the CA's file for a private CA"),
            RootCert::System => f.write_str("sslrootcert=system"),
            RootCert::File(path) => write!(f, "sslrootcert={path}"),
        }
    }
}

/// The verifier of `prefer`/`require` (no roots: any certificate) and of `verify-ca` (the chain,
/// not the name). Either way the handshake signatures are checked, as libpq does: the server
/// must hold the key of the certificate it shows, so a passive listener learns nothing; an
/// active one can still show its own certificate, which only `verify-full` prevents.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The connection string without `sslmode` and `sslrootcert`, for tokio-postgres, and what they
/// ask. Both forms are read: a `postgres://` URL's query and libpq's `key=value` pairs. A string
/// neither form reads is handed over whole, for the driver to report.
pub fn split(url: &str) -> Result<(String, Tls)> {
    let (rest, pairs) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        match split_pairs(url) {
            Some(split) => split,
            None => (url.to_string(), Vec::new()),
        }
    };
    let mut mode = None;
    let mut root_cert = None;
    // As in libpq, the last of a repeated key counts.
    for (key, value) in pairs {
        if key == "sslmode" {
            mode = Some(MODES.iter().find(|(name, _)| *name == value).map(|(_, mode)| *mode).ok_or_else(|| {
                Error::InvalidOption(format!(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got {value:?}"
                ))
            })?);
        } else {
            root_cert = match value.as_str() {
                "" => None,
                "system" => Some(RootCert::System),
                _ => Some(RootCert::File(value)),
            };
        }
    }
    let root_cert = root_cert.unwrap_or(RootCert::Mozilla);
    let mode = match (mode, &root_cert) {
        (None, RootCert::System) => SslMode::VerifyFull,
        (Some(mode), RootCert::System) if mode != SslMode::VerifyFull => {
            return Err(Error::InvalidOption(format!(
                "sslrootcert=system requires sslmode=verify-full (as in libpq), got sslmode={mode}"
            )))
        }
        (mode, _) => mode.unwrap_or(SslMode::Prefer),
    };
    Ok((rest, Tls { mode, root_cert }))
}

const TAKEN: [&str; 2] = ["sslmode", "sslrootcert"];

/// A URL's query, as tokio-postgres reads it: after the credentials (up to the first `@`), from
/// the first `?`, `&`-separated, percent-encoded.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[after_credentials..].find('?').map(|at| at + after_credentials) else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in url[question + 1..].split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match (percent_decode(key), percent_decode(value)) {
            (Some(key), Some(value)) if TAKEN.contains(&key.as_str()) => taken.push((key, value)),
            _ => kept.push(param),
        }
    }
    let base = &url[..question];
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (rest, taken)
}

/// `%XX` decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// libpq's `key = value` pairs, as tokio-postgres reads them (a value quoted in `'…'` or up to
/// whitespace, `\` escaping the next character): the string with the taken pairs cut out, and
/// those pairs. `None` when it is not such a string.
fn split_pairs(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut chars = text.char_indices().peekable();
    let mut rest = String::with_capacity(text.len());
    let mut taken = Vec::new();
    let mut kept_from = 0;
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=')?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next()? {
                    (_, '\'') => break,
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, c) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(if c == '\\' { chars.next()?.1 } else { c });
            }
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if TAKEN.contains(&key.as_str()) {
            rest.push_str(&text[kept_from..start]);
            kept_from = chars.peek().map_or(text.len(), |&(at, _)| at);
            taken.push((key, value));
        }
    }
    rest.push_str(&text[kept_from..]);
    Some((rest, taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root_cert: RootCert) -> Tls {
        Tls { mode, root_cert }
    }

    #[test]
    fn every_libpq_mode_is_read_from_both_forms_and_taken_out() {
        for (name, mode) in MODES {
            let (rest, got) = split(&format!("postgres://u:p@h:5/db?sslmode={name}&application_name=a")).unwrap();
            assert_eq!(rest, "postgres://u:p@h:5/db?application_name=a");
            assert_eq!(got, tls(mode, RootCert::Mozilla));
            let (rest, got) = split(&format!("host=h sslmode = {name}  user=u")).unwrap();
            assert_eq!(rest, "host=h user=u");
            assert_eq!(got, tls(mode, RootCert::Mozilla));
        }
    }

    #[test]
    fn the_default_is_prefer_and_the_rest_of_the_string_is_kept_as_written() {
        for url in ["postgres://u@h/db", "postgresql://u@h/db?connect_timeout=3", "host=h password='a b\\'c'", ""] {
            assert_eq!(split(url).unwrap(), (url.to_string(), tls(SslMode::Prefer, RootCert::Mozilla)), "{url}");
        }
    }

    #[test]
    fn sslrootcert_names_a_file_or_the_system_store_in_both_forms() {
        let (rest, got) = split("postgres://u@h/db?sslrootcert=%2Ftmp%2Fmy%20ca.pem&sslmode=verify-ca").unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(got, tls(SslMode::VerifyCa, RootCert::File("/tmp/my ca.pem".into())));
        let (rest, got) = split("sslrootcert='/tmp/my ca\\'s.pem' host=h sslmode=verify-full").unwrap();
        assert_eq!(rest, "host=h ");
        assert_eq!(got, tls(SslMode::VerifyFull, RootCert::File("/tmp/my ca's.pem".into())));
        assert_eq!(split("host=h sslrootcert=system").unwrap().1, tls(SslMode::VerifyFull, RootCert::System));
        assert_eq!(split("host=h sslrootcert='' sslmode=require").unwrap().1, tls(SslMode::Require, RootCert::Mozilla));
    }

    #[test]
    fn the_last_of_a_repeated_key_counts() {
        assert_eq!(split("sslmode=disable sslmode=require").unwrap().1.mode, SslMode::Require);
        assert_eq!(split("postgres://h?sslmode=require&sslmode=disable").unwrap().1.mode, SslMode::Disable);
    }

    #[test]
    fn a_password_holding_a_question_mark_is_not_read_as_the_query() {
        let (rest, got) = split("postgres://u:p?x@h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://u:p?x@h/db");
        assert_eq!(got.mode, SslMode::Require);
    }

    #[test]
    fn unknown_modes_and_system_roots_without_verify_full_are_invalid_options() {
        for url in [
            "postgres://h/db?sslmode=verify",
            "host=h sslmode=REQUIRE",
            "host=h sslmode=",
            "host=h sslrootcert=system sslmode=require",
            "postgres://h/db?sslrootcert=system&sslmode=verify-ca",
        ] {
            assert_eq!(split(url).unwrap_err().code(), "ERR_INVALID_OPTION", "{url}");
        }
    }

    #[test]
    fn a_string_of_neither_form_is_left_to_the_driver() {
        for url in ["garbage", "host='unterminated", "sslmode=require x"] {
            assert_eq!(split(url).unwrap(), (url.to_string(), tls(SslMode::Prefer, RootCert::Mozilla)), "{url}");
        }
    }

    #[test]
    fn each_mode_checks_what_libpq_checks() {
        let file = RootCert::File("ca.pem".into());
        assert_eq!(tls(SslMode::Prefer, RootCert::Mozilla).check(), Check::Possession);
        assert_eq!(tls(SslMode::Require, RootCert::Mozilla).check(), Check::Possession);
        assert_eq!(tls(SslMode::Require, file.clone()).check(), Check::Chain);
        assert_eq!(tls(SslMode::VerifyCa, RootCert::Mozilla).check(), Check::Chain);
        assert_eq!(tls(SslMode::VerifyFull, file).check(), Check::Full);
        assert_eq!(tls(SslMode::Allow, RootCert::Mozilla).driver_mode(), DriverMode::Prefer);
        assert_eq!(tls(SslMode::VerifyCa, RootCert::Mozilla).driver_mode(), DriverMode::Require);
        assert_eq!(tls(SslMode::Disable, RootCert::Mozilla).driver_mode(), DriverMode::Disable);
    }

    #[test]
    fn rustls_sets_up_for_every_mode_and_a_missing_or_empty_root_file_is_an_invalid_option() {
        for (_, mode) in MODES {
            assert!(tls(mode, RootCert::Mozilla).connector().is_ok(), "{mode}");
        }
        let dir = std::env::temp_dir().join(format!("eventlite-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [dir.join("missing.pem"), empty] {
            let root_cert = RootCert::File(path.to_string_lossy().into_owned());
            let err = tls(SslMode::VerifyCa, root_cert).connector().err().unwrap();
            assert_eq!(err.code(), "ERR_INVALID_OPTION", "{path:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
