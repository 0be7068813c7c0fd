//! Tokens minted for the tests (HS256, RS256, ES256, EdDSA) and a JWKS
//! served over HTTP on loopback whose keys the test can rotate.
//!
//! The PEM files under `keys/` are throwaway key pairs made for these tests
//! (`openssl genpkey`); they protect nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The HMAC secret of the HS256 tests (at least 32 bytes, as required).
pub const SECRET: &str = "test-secret-for-hs256-tokens-0123456789";

/// A test key file, by name (`rsa-public.pem`).
pub fn key_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/api/keys")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

/// Signs tokens with one key.
pub struct Minter {
    key: EncodingKey,
    algorithm: Algorithm,
    kid: Option<String>,
}

impl Minter {
    pub fn hs256(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()).unwrap(),
            algorithm: Algorithm::HS256,
            kid: None,
        }
    }

    pub fn rs256() -> Self {
        Self::rsa("rsa-private.pem")
    }

    pub fn rsa(private_pem: &str) -> Self {
        Self {
            key: EncodingKey::from_rsa_pem(&pem(private_pem)).unwrap(),
            algorithm: Algorithm::RS256,
            kid: None,
        }
    }

    pub fn es256() -> Self {
        Self {
            key: EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap(),
            algorithm: Algorithm::ES256,
            kid: None,
        }
    }

    pub fn eddsa() -> Self {
        Self {
            key: EncodingKey::from_ed_pem(&pem("ed-private.pem")).unwrap(),
            algorithm: Algorithm::EdDSA,
            kid: None,
        }
    }

    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    pub fn token(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.kid);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// The public half as a JWK (with this minter's `kid`).
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
        jwk.common.key_id.clone_from(&self.kid);
        serde_json::to_value(jwk).unwrap()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims with `sub`, the `ssehub` patterns, and `exp` in `expires_in` s.
pub fn claims(sub: &str, publish: &[&str], subscribe: &[&str], expires_in: i64) -> Value {
    json!({
        "sub": sub,
        "exp": now() + expires_in,
        "ssehub": {"publish": publish, "subscribe": subscribe},
    })
}

/// Base64url without padding, for hand-made malformed tokens.
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWKS document served at `/jwks.json` on loopback; [`Self::serve`]
/// replaces it (a key rotation), [`Self::requests`] counts the fetches.
pub struct JwksServer {
    pub addr: SocketAddr,
    document: Arc<Mutex<Value>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let document = Arc::new(Mutex::new(json!({ "keys": keys })));
        let requests = Arc::new(AtomicUsize::new(0));
        let task = {
            let document = document.clone();
            let requests = requests.clone();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let document = document.clone();
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        // One request per connection: read the head, answer, close.
                        let mut head = Vec::new();
                        let mut buffer = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buffer[..n]),
                            }
                        }
                        requests.fetch_add(1, Ordering::SeqCst);
                        let body = document.lock().unwrap().to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    });
                }
            })
        };
        Self {
            addr,
            document,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn serve(&self, keys: Vec<Value>) {
        *self.document.lock().unwrap() = json!({ "keys": keys });
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
