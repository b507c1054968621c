# Build fragment for dist/: what a system installation of gptd needs beside the
# programs: the systemd units, the system user (sysusers.d), the state directory
# (tmpfiles.d); see the top-level Makefile.am.

systemdsystemunit_DATA = dist/gptd.service dist/gptd.socket
CLEANFILES += dist/gptd.service
EXTRA_DIST += dist/gptd.service.in dist/gptd.socket dist/gptd.sysusers dist/gptd.tmpfiles

# The unit names the installed gptd.
dist/gptd.service: $(srcdir)/dist/gptd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) dist && sed -e 's|@bindir[@]|$(bindir)|g' $(srcdir)/dist/gptd.service.in > $@

install-data-local: install-dist-sysusers
uninstall-local: uninstall-dist-sysusers
install-dist-sysusers:
	$(MKDIR_P) $(DESTDIR)$(sysusersdir) $(DESTDIR)$(tmpfilesdir)
	$(INSTALL_DATA) $(srcdir)/dist/gptd.sysusers $(DESTDIR)$(sysusersdir)/gptd.conf
	$(INSTALL_DATA) $(srcdir)/dist/gptd.tmpfiles $(DESTDIR)$(tmpfilesdir)/gptd.conf
uninstall-dist-sysusers:
	rm -f $(DESTDIR)$(sysusersdir)/gptd.conf $(DESTDIR)$(tmpfilesdir)/gptd.conf
.PHONY: install-dist-sysusers uninstall-dist-sysusers

# The configuration file, every key documented with its default commented out.
gptdconfdir = $(sysconfdir)/gptd
dist_gptdconf_DATA = dist/gptd.conf

# Manual pages and the bash completion (one file serves gptctl and gptd).
dist_man1_MANS = dist/man/gptctl.1
dist_man5_MANS = dist/man/gptd.pipeline.5 dist/man/gptd.conf.5
dist_man8_MANS = dist/man/gptd.8
bashcompletion_DATA = dist/completion/gptctl
EXTRA_DIST += dist/completion/gptctl
install-data-hook: install-gptd-completion-link
install-gptd-completion-link:
	cd $(DESTDIR)$(bashcompletiondir) && rm -f gptd && $(LN_S) gptctl gptd
uninstall-hook: uninstall-gptd-completion-link
uninstall-gptd-completion-link:
	rm -f $(DESTDIR)$(bashcompletiondir)/gptd
.PHONY: install-gptd-completion-link uninstall-gptd-completion-link
