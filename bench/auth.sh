#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cost of authentication at the edge, in one run: req/s of a proxied
# location (origin: an nginx `return 200`, keep-alive upstreams) through
#   shoal, no auth                         /plain/
#   shoal, auth_jwt ES256 (JWKS key file)  /jwt/   (one token: verified once,
#                                                   then shoal's verified-token cache)
#   shoal, auth_jwt ES256, 4000 tokens     /jwt/   (cycled by wrk: every request
#                                                   checks a signature; needs python3-cryptography)
#   shoal, auth_request to the validator   /ar/
#   nginx, no auth                         /plain/
#   nginx, auth_request to the validator   /ar/   (the usual OSS workaround)
#   nginx, auth_request to `return 204`    /ar204/ (the subrequest alone, no check)
# The validator is integration/auth_backend.py (Python, stdlib: it accepts a
# JWT-shaped token, it cannot verify ES256), a stand-in for a real one.
# Shoal and nginx each run 1 worker pinned to CPU 0, wrk -t1 -c32 with a
# fixed "Authorization: Bearer <ES256 token>" on the last CPU; runs are
# interleaved ROUNDS times and medians printed. The machine is shared and
# loaded: read the ratios, not the absolute figures.
#   bench/auth.sh [SECONDS per run, default 5] [ROUNDS, default 3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
. "$here/lib.sh"
bench_init auth wrk taskset openssl python3 nginx
mkdir -p "$d/logs" "$d/origin/logs" "$d/front/logs" "$d/tmp"
po=$(free_port) ps=$(free_port) pn=$(free_port) pa=$(free_port)

# an ES256 key, its JWKS, and a token valid for an hour
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ec.pem" 2>/dev/null
token=$(${BENCH_PYTHON:-/usr/bin/python3} - "$d" <<'PY'
import base64, json, subprocess, sys, time
d = sys.argv[1]
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
der = subprocess.run(["openssl", "pkey", "-in", d + "/ec.pem", "-pubout", "-outform", "DER"],
                     check=True, capture_output=True).stdout
pt = der[-65:]
json.dump({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64u(pt[1:33]),
                     "y": b64u(pt[33:])}]}, open(d + "/jwks.json", "w"))
si = (b64u(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k1"}).encode()) + "." +
      b64u(json.dumps({"sub": "bench", "exp": int(time.time()) + 3600}).encode())).encode()
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", d + "/ec.pem"], input=si,
                     check=True, capture_output=True).stdout
i, raw = 2, b""
for _ in range(2):  # DER ECDSA-Sig-Value -> r || s
    n = sig[i + 1]
    raw += sig[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
    i += 2 + n
print(si.decode() + "." + b64u(raw))
try:  # 4000 distinct tokens for the uncached case (python3-cryptography)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    key = serialization.load_pem_private_key(open(d + "/ec.pem", "rb").read(), None)
    with open(d + "/tokens.lua", "w") as f:
        f.write("local t = {\n")
        for j in range(4000):
            si = (b64u(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k1"}).encode()) + "." +
                  b64u(json.dumps({"sub": "bench", "jti": j, "exp": int(time.time()) + 3600}).encode()))
            r, s = utils.decode_dss_signature(key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
            f.write('"%s.%s",\n' % (si, b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))))
        f.write("}\nlocal n = 0\nrequest = function()\n  n = n % #t + 1\n"
                "  return wrk.format(\"GET\", wrk.path, { [\"Authorization\"] = \"Bearer \" .. t[n] })\nend\n")
except ImportError:
    pass
PY
)

cat > "$d/origin/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/origin/nginx.pid;
error_log $d/origin/logs/error.log warn; events { worker_connections 4096; }
http { access_log off; client_body_temp_path $d/tmp/ob; proxy_temp_path $d/tmp/op;
  fastcgi_temp_path $d/tmp/of; uwsgi_temp_path $d/tmp/ou; scgi_temp_path $d/tmp/os;
  keepalive_requests 1000000000;
  server { listen 127.0.0.1:$po; location / { return 200 "ok\n"; } } }
CONF
cat > "$d/shoal.conf" <<CONF
worker_processes 1; error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000000;
  upstream origin { server 127.0.0.1:$po; keepalive 64; }
  upstream validator { server 127.0.0.1:$pa; keepalive 64; }
  server { listen 127.0.0.1:$ps;
    location /plain/ { proxy_pass http://origin; }
    location /jwt/ { auth_jwt "api"; auth_jwt_key_file $d/jwks.json; proxy_pass http://origin; }
    location = /auth { internal; proxy_pass http://validator/check; }
    location /ar/ { auth_request /auth; proxy_pass http://origin; }
  }
}
CONF
cat > "$d/front/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/front/nginx.pid;
error_log $d/front/logs/error.log warn; events { worker_connections 4096; }
http { access_log off; client_body_temp_path $d/tmp/fb; proxy_temp_path $d/tmp/fp;
  fastcgi_temp_path $d/tmp/ff; uwsgi_temp_path $d/tmp/fu; scgi_temp_path $d/tmp/fs;
  keepalive_requests 1000000000;
  upstream origin { server 127.0.0.1:$po; keepalive 64; }
  upstream validator { server 127.0.0.1:$pa; keepalive 64; }
  server { listen 127.0.0.1:$pn;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /plain/ { proxy_pass http://origin; }
    location = /auth { internal; proxy_pass http://validator/check;
      proxy_pass_request_body off; proxy_set_header Content-Length ""; }
    location = /auth204 { internal; return 204; }
    location /ar/ { auth_request /auth; proxy_pass http://origin; }
    location /ar204/ { auth_request /auth204; proxy_pass http://origin; }
  }
}
CONF
taskset -c "$last" "$nginx" -p "$d/origin/" -c "$d/origin/nginx.conf" & pids+=($!)
taskset -c "$last" python3 "$root/integration/auth_backend.py" --port "$pa" >/dev/null & pids+=($!)
taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" & pids+=($!)
taskset -c 0 "$nginx" -p "$d/front/" -c "$d/front/nginx.conf" & pids+=($!)
auth="Authorization: Bearer $token"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$pa/count" && break; sleep 0.05; done
for p in $ps $pn; do
  for _ in $(seq 100); do curl -sf -o /dev/null -H "$auth" "http://127.0.0.1:$p/plain/" && break; sleep 0.05; done
done
for u in "$ps/jwt/" "$ps/ar/" "$pn/ar/" "$pn/ar204/"; do
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "$auth" "http://127.0.0.1:$u")
  [ "$c" = 200 ] || { echo "auth.sh: $u answers $c, not 200" >&2; tail -5 "$d/logs/error.log" >&2; exit 1; }
done
c=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ps/jwt/")
[ "$c" = 401 ] || { echo "auth.sh: /jwt/ without a token answers $c" >&2; exit 1; }

run() { # URL [lua script]
  local s=(-H "$auth"); [ -n "${2:-}" ] && s=(-s "$2")
  taskset -c "$last" wrk -t1 -c32 -d"${secs}s" "${s[@]}" "http://127.0.0.1:$1" \
    | awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non-2xx:" $NF > "/dev/stderr"}'; }
declare -A all
names=(shoal_plain shoal_jwt shoal_jwt_cold shoal_ar nginx_plain nginx_ar nginx_ar204)
urls=("$ps/plain/" "$ps/jwt/" "$ps/jwt/" "$ps/ar/" "$pn/plain/" "$pn/ar/" "$pn/ar204/")
for _ in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = shoal_jwt_cold ]; then
      [ -f "$d/tokens.lua" ] || { all[shoal_jwt_cold]+="0 "; continue; }
      all[shoal_jwt_cold]+="$(run "${urls[$i]}" "$d/tokens.lua") "
    else
      all[${names[$i]}]+="$(run "${urls[$i]}") "
    fi
  done
done
declare -A med
for n in "${names[@]}"; do med[$n]=$(median ${all[$n]}); done
echo "proxied location (origin: nginx return 200), 1 worker on CPU 0, wrk -t1 -c32 on CPU $last, ${secs}s x $rounds, medians"
printf '%-44s %10s   %s\n' "case" "req/s" "runs"
printf '%-44s %10s   %s\n' "shoal, no auth" "${med[shoal_plain]}" "${all[shoal_plain]}"
printf '%-44s %10s   %s\n' "shoal, auth_jwt ES256, one token (cached)" "${med[shoal_jwt]}" "${all[shoal_jwt]}"
printf '%-44s %10s   %s\n' "shoal, auth_jwt ES256, 4000 tokens (verified)" "${med[shoal_jwt_cold]}" "${all[shoal_jwt_cold]}"
printf '%-44s %10s   %s\n' "shoal, auth_request -> python validator" "${med[shoal_ar]}" "${all[shoal_ar]}"
printf '%-44s %10s   %s\n' "nginx, no auth" "${med[nginx_plain]}" "${all[nginx_plain]}"
printf '%-44s %10s   %s\n' "nginx, auth_request -> python validator" "${med[nginx_ar]}" "${all[nginx_ar]}"
printf '%-44s %10s   %s\n' "nginx, auth_request -> return 204 (no check)" "${med[nginx_ar204]}" "${all[nginx_ar204]}"
awk -v sp="${med[shoal_plain]}" -v sj="${med[shoal_jwt]}" -v na="${med[nginx_ar]}" -v n4="${med[nginx_ar204]}" \
    -v np="${med[nginx_plain]}" -v sc="${med[shoal_jwt_cold]}" 'BEGIN {
  printf "auth_jwt ES256, one token, keeps %.0f%% of shoal'"'"'s unauthenticated req/s\n", 100 * sj / sp
  if (sc > 0) printf "auth_jwt ES256, every request verified, keeps %.0f%% (%.1f us per request)\n", 100 * sc / sp, 1e6 / sc - 1e6 / sp
  printf "shoal auth_jwt (one token) / nginx auth_request to the validator: %.1fx\n", sj / na
  if (sc > 0) printf "shoal auth_jwt (every request verified) / nginx auth_request to the validator: %.1fx\n", sc / na
  printf "shoal auth_jwt (one token) / nginx auth_request to return 204 (no check at all): %.2fx\n", sj / n4
  printf "nginx auth_request to return 204 keeps %.0f%% of nginx'"'"'s unauthenticated req/s\n", 100 * n4 / np }'
