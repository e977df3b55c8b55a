# Shared by the scripts that put nginx beside sluice: `source "$(dirname "$0")/nginx.sh"`.

# start_nginx DIR LISTEN_PORT SINK_PORT: starts nginx in the background as a reverse proxy on
# 127.0.0.1:LISTEN_PORT in front of the sink on SINK_PORT, streaming both ways like sluice
# (request and response buffering off) over kept-alive sink connections, with its config, logs
# and temporary files in DIR; sets NGINX_PID and adds it to the caller's `pids`.
start_nginx() {
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<NGINX
daemon off;
worker_processes auto;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  client_max_body_size 0;
  upstream sink {
    server 127.0.0.1:$3;
    keepalive 512;
  }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
NGINX
  nginx -p "$1" -e "$1/error.log" -c "$1/nginx.conf" >"$1/nginx.log" 2>&1 &
  NGINX_PID=$!
  pids+=("$NGINX_PID")
}
