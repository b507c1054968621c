/* e2e-notify.c: the listening end of systemd's notification protocol, for the
 * end-to-end tests: binds a datagram socket at PATH (as NOTIFY_SOCKET names it)
 * and prints each message it receives on one line (its newlines shown as spaces),
 * until SECONDS pass or a message holds STOPPING=1.
 *
 *   e2e-notify PATH SECONDS
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int
main (int argc, char **argv)
{
  if (argc != 3)
    {
      fprintf (stderr, "usage: e2e-notify PATH SECONDS\n");
      return 2;
    }
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen (argv[1]) >= sizeof addr.sun_path)
    {
      fprintf (stderr, "e2e-notify: path too long\n");
      return 2;
    }
  strcpy (addr.sun_path, argv[1]);
  int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    {
      fprintf (stderr, "e2e-notify: %s: %s\n", argv[1], strerror (errno));
      return 1;
    }
  setvbuf (stdout, NULL, _IOLBF, 0);
  time_t end = time (NULL) + atoi (argv[2]);
  char buf[4096];
  while (time (NULL) < end)
    {
      struct pollfd p = { .fd = fd, .events = POLLIN };
      if (poll (&p, 1, 200) <= 0)
        continue;
      ssize_t n = recv (fd, buf, sizeof buf - 1, 0);
      if (n <= 0)
        continue;
      buf[n] = '\0';
      for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n')
          buf[i] = ' ';
      printf ("%s\n", buf);
      if (strstr (buf, "STOPPING=1") != NULL)
        break;
    }
  unlink (argv[1]);
  return 0;
}
