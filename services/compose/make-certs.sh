#!/usr/bin/env bash
# Make the private CA and the TLS certificates docker-compose.yml mounts (run once, on the
# Docker host, before the first `docker compose up`):
#
#   services/compose/make-certs.sh ./tls [SMTP_NAME]     then set POSTVAULT_TLS_DIR=./tls in .env
#
# DIR/ca/         root-ca.pem and its key: keep the key offline; it is never mounted
# DIR/opensearch/ the node's certificate (DNS opensearch) and the admin client certificate,
#                 the only identity that may manage OpenSearch's security configuration
# DIR/s3/         versitygw's certificate (DNS s3)
# DIR/postvault/  root-ca.pem, which postvault verifies OpenSearch and S3 against, and the
#                 journal listener's STARTTLS certificate for SMTP_NAME (default: this host's FQDN)
#
# Existing files are kept; delete DIR to start again. Needs openssl. Run as root so that
# each folder can be given to the user its container runs as (OpenSearch 1000, versitygw
# root, postvault 10001).
set -euo pipefail

dir="${1:?usage: make-certs.sh DIR [SMTP_NAME]}"
smtp_name="${2:-$(hostname -f 2>/dev/null || hostname)}"
days=825   # the longest validity current TLS clients accept for a server certificate
subject="/O=postvault/OU=compose"

command -v openssl >/dev/null || { echo "make-certs: needs openssl" >&2; exit 1; }
umask 077
mkdir -p "$dir/ca" "$dir/opensearch" "$dir/s3" "$dir/postvault"

if [ ! -s "$dir/ca/root-ca.pem" ]; then
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$dir/ca/root-ca-key.pem"
  openssl req -x509 -new -key "$dir/ca/root-ca-key.pem" -sha256 -days 3650 -subj "$subject/CN=postvault compose CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca/root-ca.pem"
fi

# issue NAME CN USAGE SAN DEST_DIR: a key (PKCS#8, as OpenSearch requires) and a certificate signed by the CA.
issue() {
  local name="$1" cn="$2" usage="$3" san="$4" dest="$5"
  [ -s "$dest/$name.pem" ] && return 0
  local ext
  ext="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } > "$ext"
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dest/$name-key.pem"
  openssl req -new -key "$dest/$name-key.pem" -subj "$subject/CN=$cn" -out "$dest/$name.csr"
  openssl x509 -req -in "$dest/$name.csr" -CA "$dir/ca/root-ca.pem" -CAkey "$dir/ca/root-ca-key.pem" -CAcreateserial \
    -CAserial "$dir/ca/root-ca.srl" -days "$days" -sha256 -extfile "$ext" -out "$dest/$name.pem" 2>/dev/null
  rm -f "$dest/$name.csr" "$ext"
}

# The node certificate serves HTTPS and the transport layer, where it is both server and client.
issue node opensearch "serverAuth,clientAuth" "DNS:opensearch,DNS:localhost,IP:127.0.0.1" "$dir/opensearch"
issue admin postvault-admin "clientAuth" "" "$dir/opensearch"
issue s3 s3 "serverAuth" "DNS:s3,DNS:localhost,IP:127.0.0.1" "$dir/s3"
issue smtp "$smtp_name" "serverAuth" "DNS:$smtp_name" "$dir/postvault"
for folder in opensearch s3 postvault; do cp "$dir/ca/root-ca.pem" "$dir/$folder/root-ca.pem"; done

chmod 700 "$dir/ca"
chmod 755 "$dir" "$dir/opensearch" "$dir/s3" "$dir/postvault"
chmod 644 "$dir"/*/root-ca.pem "$dir"/opensearch/node.pem "$dir"/opensearch/admin.pem "$dir"/s3/s3.pem "$dir"/postvault/smtp.pem
chmod 600 "$dir"/*/*-key.pem
if [ "$(id -u)" = 0 ]; then
  chown -R 1000:1000 "$dir/opensearch"
  chown -R 10001:10001 "$dir/postvault"
else
  echo "make-certs: not root: give the folders to their containers' users before starting the stack:" >&2
  echo "  sudo chown -R 1000:1000 $dir/opensearch && sudo chown -R 10001:10001 $dir/postvault && sudo chown -R 0:0 $dir/s3" >&2
fi
echo "make-certs: certificates in $dir (CA: $dir/ca/root-ca.pem); set POSTVAULT_TLS_DIR=$dir in .env" >&2
