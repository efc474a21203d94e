# SPDX-License-Identifier: Apache-2.0
# Install rules and the Debian package (issue 17). `cmake --install build`
# and `cpack -G DEB` (run in the build tree) install the same files:
#
#   /usr/sbin/shoal, /usr/bin/nodectl
#   /etc/shoal/shoal.conf, /etc/shoal/conf.d/     (conffiles in the package)
#   /etc/logrotate.d/shoal                         (SIGUSR1: reopen the logs)
#   /lib/systemd/system/shoal.service              (Type=notify, hardened)
#   /usr/share/man/man8/shoal.8.gz, man1/nodectl.1.gz
#   /usr/share/bash-completion/completions/nodectl
#   /usr/share/doc/shoal/{README.md,deploy.md,copyright}
#
# The package is always laid out for prefix /usr (CPack installs this tree
# with CMAKE_INSTALL_PREFIX=/usr), whatever prefix the tree was configured
# with. `cmake --install` uses the configured prefix, which defaults to /usr
# here (not CMake's /usr/local) so that it installs the same files; another
# prefix P gives P/sbin, P/etc/shoal, P/lib/systemd/system, and the unit
# names P's paths. That is why /etc and the unit are placed by install(CODE)
# below: their place depends on the prefix at install time, /etc for /usr
# (as GNUInstallDirs does), P/etc otherwise.
#
# The package's maintainer scripts (postinst, prerm, postrm beside this
# file) make the `shoal` user, /var/log/shoal and /var/lib/shoal; after a
# bare `cmake --install`, `sh scripts/packaging/postinst configure` (root)
# does the same. Runtime dependencies are computed by dpkg-shlibdeps
# (dpkg-dev), not listed by hand.

if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()
include(GNUInstallDirs)

set(pkg ${CMAKE_CURRENT_LIST_DIR})

# Manual pages, compressed as Debian ships them (gzip -n: no name, no time).
set(man_out)
foreach(page docs/shoal.8 docs/nodectl.1)
  get_filename_component(name ${page} NAME)
  set(gz ${CMAKE_BINARY_DIR}/packaging/${name}.gz)
  add_custom_command(OUTPUT ${gz}
                     COMMAND gzip -9n -c ${CMAKE_SOURCE_DIR}/${page} > ${gz}
                     DEPENDS ${CMAKE_SOURCE_DIR}/${page} VERBATIM)
  list(APPEND man_out ${gz})
endforeach()
add_custom_target(shoal_man ALL DEPENDS ${man_out})

install(TARGETS shoal RUNTIME DESTINATION sbin)
if(TARGET nodectl)
  install(TARGETS nodectl RUNTIME DESTINATION bin)
endif()
install(FILES ${CMAKE_BINARY_DIR}/packaging/shoal.8.gz DESTINATION share/man/man8)
install(FILES ${CMAKE_BINARY_DIR}/packaging/nodectl.1.gz DESTINATION share/man/man1)
install(FILES ${pkg}/nodectl.bash-completion
        DESTINATION share/bash-completion/completions RENAME nodectl)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/docs/deploy.md ${pkg}/copyright
        DESTINATION share/doc/shoal)
# /etc and the unit, by the prefix at install time (see above).
install(CODE "
  set(p \"\${CMAKE_INSTALL_PREFIX}\")
  if(p STREQUAL \"/usr\")
    set(etc /etc)
    set(unitdir /lib/systemd/system)   # Debian 12's systemdsystemunitdir
  else()
    set(etc \"\${p}/etc\")
    set(unitdir \"\${p}/lib/systemd/system\")
  endif()
  set(SHOAL_SBINDIR \"\${p}/sbin\")
  set(SHOAL_SYSCONFDIR \"\${etc}\")
  set(SHOAL_DOCDIR \"\${p}/share/doc/shoal\")
  configure_file(${pkg}/shoal.service.in ${CMAKE_BINARY_DIR}/packaging/shoal.service @ONLY)
  file(INSTALL ${pkg}/shoal.conf DESTINATION \"\${etc}/shoal\")
  file(MAKE_DIRECTORY \"\$ENV{DESTDIR}\${etc}/shoal/conf.d\")
  file(INSTALL ${pkg}/shoal.logrotate DESTINATION \"\${etc}/logrotate.d\" RENAME shoal)
  file(INSTALL ${CMAKE_BINARY_DIR}/packaging/shoal.service DESTINATION \"\${unitdir}\")
")

# ------------------------------------------------------------- the package --
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME shoal)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "Shoal maintainers <maintainers@shoal.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed API gateway: nginx configuration, SWIM cluster")
string(CONCAT CPACK_DEBIAN_PACKAGE_DESCRIPTION
       "Every node is a complete reverse proxy (HTTP/1.1, HTTP/2, TLS, load balancing)\n"
       "configured in nginx syntax; nodes form a cluster over encrypted SWIM gossip,\n"
       "managed with nodectl and an admin API with a live dashboard.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # shoal_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION httpd)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # Depends computed by dpkg-shlibdeps
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser") # the postinst's
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
file(WRITE ${CMAKE_BINARY_DIR}/packaging/conffiles
     "/etc/shoal/shoal.conf\n/etc/logrotate.d/shoal\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/packaging/conffiles ${pkg}/postinst ${pkg}/prerm ${pkg}/postrm)
include(CPack)
