# Shared by the scripts that put nginx beside sluice: `source "$(dirname "$0")/nginx_conf.sh"`.

# nginx_conf DIR LISTEN_PORT SINK_PORT: writes DIR/nginx.conf, an nginx reverse proxy on
# 127.0.0.1:LISTEN_PORT in front of the sink on SINK_PORT, streaming both ways like sluice
# (request and response buffering off) over kept-alive sink connections; run it with
# `nginx -p DIR -e DIR/error.log -c DIR/nginx.conf` (it stays in the foreground).
nginx_conf() {
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
}
