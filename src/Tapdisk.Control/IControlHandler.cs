namespace Tapdisk.Control;

/// <summary>Serves control requests; the server has already checked framing and the path-slot rule.</summary>
public interface IControlHandler
{
    Task HandleAsync(ControlConnection connection, TapdiskMessage request, CancellationToken cancellationToken);
}
