# SPDX-License-Identifier: Apache-2.0
# Every dependency comes from a Debian 12 package and is found with pkg-config.
# A missing one stops configuration with one line naming the package to install.
find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

function(sh_require target module debpkg)
  pkg_check_modules(${target} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${target}_FOUND)
    message(FATAL_ERROR "missing ${module}: apt-get install ${debpkg}")
  endif()
endfunction()

sh_require(UV        "libuv>=1.44"     libuv1-dev)
sh_require(SSL       "openssl>=3.0"    libssl-dev)
sh_require(NGHTTP2   libnghttp2        libnghttp2-dev)
sh_require(PROTOBUFC libprotobuf-c     libprotobuf-c-dev)
sh_require(LMDB      lmdb              liblmdb-dev)
sh_require(SODIUM    libsodium         libsodium-dev)
sh_require(PCRE2     libpcre2-8        libpcre2-dev)
sh_require(ZLIB      zlib              zlib1g-dev)
sh_require(JANSSON   jansson           libjansson-dev)
# the resolver (proxy_pass with variables): asks the configured servers only
sh_require(CARES     libcares          libc-ares-dev)
# crypt(3) for htpasswd files (auth_basic: bcrypt, SHA-crypt, MD5-crypt)
sh_require(CRYPT     libcrypt          libcrypt-dev)
# sd_notify for the packaged unit (Type=notify); a no-op where NOTIFY_SOCKET is unset
sh_require(SYSTEMD   libsystemd        libsystemd-dev)
if(SHOAL_TESTS)
  sh_require(CMOCKA  cmocka            libcmocka-dev)
endif()

find_program(PROTOC_C protoc-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "missing protoc-c: apt-get install protobuf-c-compiler")
endif()

find_package(Threads REQUIRED)
